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
