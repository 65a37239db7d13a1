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

    The whole sequence commits or rolls back as one transaction, so a failing build leaves the table and
    its model_build rows as they were. `--full-refresh` cannot drop the table (full_refresh: false):
    a full rebuild of every district is a run without the districts var.

    A model with another strategy (att_day_aggregation) may still use the hooks by calling them itself
    with force=true (and as_of_date=as_of_date() for record_model_build).
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
    delete from {{ target_relation }}
    where {{ district_filter('district_code', districts) }};

    insert into {{ target_relation }} ({{ columns }})
    select {{ columns }}
    from {{ temp_relation }};
{%- endmacro %}


{% macro uses_district_replace() -%}
    {{- return(config.get('materialized') == 'incremental'
               and config.get('incremental_strategy') == 'district_replace') -}}
{%- endmacro %}


{% macro capture_landing_horizon(force=false) -%}
    {%- if force or uses_district_replace() -%}
    create temporary table landing_horizon on commit drop as
    select district_code, max(batch_id) as landing_batch_id
    from landing.load_batch
    group by district_code
    {%- endif -%}
{%- endmacro %}


{% macro record_model_build(force=false, as_of_date=none, districts=none) -%}
    {%- if execute and (force or uses_district_replace()) -%}
        {%- set codes = selected_districts() if districts is none else districts -%}
        {%- if codes | length > 0 -%}
    insert into state.model_build as build (model_name, district_code, landing_batch_id, built_at, as_of_date)
    select '{{ this.identifier }}', replaced.district_code, horizon.landing_batch_id, clock_timestamp(),
           {{ as_of_date if as_of_date is not none else 'cast(null as date)' }}
    from (values {% for code in codes %}('{{ code | replace("'", "''") }}'){{ ', ' if not loop.last }}{% endfor %})
        as replaced (district_code)
    left join pg_temp.landing_horizon as horizon on horizon.district_code = replaced.district_code
    on conflict (model_name, district_code) do update
    set landing_batch_id = excluded.landing_batch_id,
        built_at = excluded.built_at,
        as_of_date = excluded.as_of_date
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{% macro create_model_build_table() -%}
    {#- A district-level writer may not create tables; a state-level build made this one
        (orchestration/warehouse/rights.py). -#}
    {%- if target.get('role') == 'attendance_district_write' -%}
        {{- return('select 1') -}}
    {%- endif -%}
    {#- on-run-* hooks run after a rollback that undoes the profile's `set role` (dbt-labs/dbt-adapters#1889):
        take the role again so the table belongs to the write role, and commit explicitly. -#}
    {{ dbt_role_statement() }}
    create table if not exists state.model_build (
        model_name text not null,
        district_code text not null,
        landing_batch_id bigint,
        built_at timestamptz not null,
        as_of_date date,
        primary key (model_name, district_code)
    );
    comment on table state.model_build is
        'Per model and district: the landing horizon (max landing.load_batch.batch_id) the last build read, '
        'when it was built and, for att_day_aggregation, its as-of date. Written by macros/district_replace.sql.';
    grant select on state.model_build to attendance_read;
    commit
{%- endmacro %}


{% macro dbt_role_statement() -%}
    {%- if target.get('role') -%}
    set local role {{ adapter.quote(target.role) }};
    {%- endif -%}
{%- endmacro %}
