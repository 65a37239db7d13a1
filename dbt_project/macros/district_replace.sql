{#-
    district_replace: the one incremental strategy of every State Edition table.

    Configured once in dbt_project.yml for models/state (materialized incremental, incremental_strategy
    district_replace, full_refresh false, plus the two hooks below). A build for districts D01 and D03
    rewrites exactly those districts' rows and leaves every other district's rows untouched:

      1. pre-hook capture_landing_horizon(): inside the model's transaction and before the model reads
         any data, copies `select district_code, max(batch_id) from landing.load_batch group by 1` into
         the temp table pg_temp.landing_horizon (dropped at commit). Landing loads commit in one
         transaction each and a district's loads are serialised by the loader's row lock (taken
         before the batch id is drawn), so every batch up to that id is committed, and the model (which
         reads after this statement, in READ COMMITTED) sees at least those batches. A load committing
         while the build runs may be read too; it is then recorded as not yet incorporated and is merely
         processed again by the next incremental build, never skipped.
      2. the model's SELECT (filtered by district_filter(), so landing partitions of other districts
         are pruned) lands in a temp table; then, in the same transaction, get_incremental_district_replace_sql:
           delete from <model> where district_code in (<selected districts>);
           insert into <model> select * from <temp>;
         The selected districts are the `districts` var, or every district of the registry
         (landing.district) when it is empty. A code not in the registry is refused with an error naming
         it (selected_districts()). A selected district whose landing is empty ends with no rows. A row
         of the temp table outside the selection is refused too: it would duplicate another district.
         The first build of a model (no table yet) is a plain `create table as` of the same SELECT; the
         indexes configured on the model (key starting with district_code, which the delete above uses)
         are created then.
      3. post-hook record_model_build(): still in the transaction, upserts
         state.model_build(model_name, district_code, landing_batch_id, built_at, as_of_date) for each
         replaced district, landing_batch_id being that district's horizon from step 1 (null when the
         district has never been loaded). att_day_aggregation reads these horizons to know which landing
         batches its parents have incorporated; the orchestration shows built_at as the last build time.
         as_of_date is null for these tables (the aggregation records its own).

    Incremental by landing batch (state_delta_active(): a `dbt run` or `dbt build` of an existing table
    with a landing key, i.e. a unique index (district_code, <key>), without `--full-refresh` and without
    the var `state_replace: true`): step 1 also works out, per selected district, which landing keys
    changed since the batch the district's model_build row records (capture_state_changes() in
    landing_horizon.sql: keys of inserted, changed and deleted rows, or every key of a district never
    built); the model reads only those keys (state_changes_filter(), in each model's WHERE), and step 2
    becomes
           delete from <model> where district_code in (<districts rebuilt whole>);
           delete from <model> using pg_temp.state_changed_keys (the changed keys' old rows);
           insert into <model> select * from <temp>;  (their current rows; a deleted key has none)
    Row-level statements only: readers keep reading, no table rewrite, no index rebuild; a district with
    nothing new costs one query on landing.load_batch/load_log. The state tables copy their landing rows
    (no column comes from a parent table), so a row changes only with its own landing row. The full
    per-district replace above stays for `--full-refresh`, `state_replace: true` (the weekly resync and
    the resync tool pass it, orchestration/dbt/runner.py) and tables without a landing key (district).

    The whole sequence commits or rolls back as one transaction, so a failing build leaves the table and
    its model_build rows as they were. `--full-refresh` cannot drop the table (full_refresh: false):
    a full rebuild of every district is a run without the districts var.

    A model with another strategy (att_day_aggregation) may still use the hooks by calling them itself
    with force=true (and as_of_date=as_of_date() for record_model_build).

    Each concern has its file: the strategy here; the pre-hook in landing_horizon.sql; the post-hook in
    model_build.sql; the state.model_build table (an on-run-start hook) in model_build_table.sql; the
    role statement in role.sql.
-#}

{% macro get_incremental_district_replace_sql(arg_dict) -%}
    {%- set target_relation = arg_dict['target_relation'] -%}
    {%- set temp_relation = arg_dict['temp_relation'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {%- set districts = selected_districts() -%}
    {%- set strays = run_query(
        "select distinct district_code from " ~ temp_relation
        ~ " where not (" ~ district_filter('district_code', districts) ~ ") or district_code is null") -%}
    {%- if strays.rows | length > 0 -%}
        {{ exceptions.raise_compiler_error(
            "district_replace: model " ~ target_relation ~ " produced rows for district(s) "
            ~ strays.columns[0].values() | join(', ') ~ " outside the selection (" ~ districts | join(', ')
            ~ "); filter its landing reads with district_filter()") }}
    {%- endif -%}
    {%- if state_delta_active() %}
    delete from {{ target_relation }}
    where district_code in (select district_code from pg_temp.state_delta where mode = 'full');

    delete from {{ target_relation }} as target
    using pg_temp.state_changed_keys as changed
    where target.district_code = changed.district_code
        and target.{{ adapter.quote(state_delta_key()) }} = changed.key;
    {%- else %}
    delete from {{ target_relation }}
    where {{ district_filter('district_code', districts) }};
    {%- endif %}

    insert into {{ target_relation }} ({{ columns }})
    select {{ columns }}
    from {{ temp_relation }};
{%- endmacro %}


{% macro uses_district_replace() -%}
    {{- return(config.get('materialized') == 'incremental'
               and config.get('incremental_strategy') == 'district_replace') -}}
{%- endmacro %}


{#-
    state_replace_requested(): the var `state_replace` (true: every selected district replaced whole, as
    before incremental state tables; the weekly resync and the resync tool pass it).
-#}
{% macro state_replace_requested() -%}
    {%- set value = var('state_replace', false) -%}
    {{- return(value is true or (value is string and value | lower in ('true', 'yes', '1'))) -}}
{%- endmacro %}


{#-
    state_delta_key(): the landing key of a state model: the second column of its unique index
    (district_code, <key>), which is also its landing table's primary key; none without one.
-#}
{% macro state_delta_key() -%}
    {%- for index in config.get('indexes') or [] -%}
        {%- if index.get('unique') and index['columns'] | length == 2 and index['columns'][0] == 'district_code' -%}
            {{- return(index['columns'][1]) -}}
        {%- endif -%}
    {%- endfor -%}
    {{- return(none) -}}
{%- endmacro %}


{#-
    state_delta_active(): whether this run of this model is incremental by landing batch (see above). Only
    `dbt run` and `dbt build` execute the pre-hook that collects the changed keys, so `dbt compile` and
    `dbt show` read the whole selection.
-#}
{% macro state_delta_active() -%}
    {{- return(execute
               and flags.WHICH in ('run', 'build')
               and not flags.FULL_REFRESH
               and not flags.EMPTY
               and uses_district_replace()
               and state_delta_key() is not none
               and not state_replace_requested()
               and load_relation(this) is not none) -}}
{%- endmacro %}


{#-
    state_changes_filter(): appended to the district filter of a state model's landing read: in an
    incremental run, only the keys capture_state_changes() collected (the uncorrelated exists is
    evaluated once, so a run with nothing to do does not even scan the key list).
-#}
{% macro state_changes_filter() -%}
    {%- if state_delta_active() -%}
        {%- set key = adapter.quote(state_delta_key()) -%}
    and exists (select from pg_temp.state_changed_keys)
    and (district_code, {{ key }}) in (select changed.district_code, changed.key from pg_temp.state_changed_keys as changed)
    {%- endif -%}
{%- endmacro %}
