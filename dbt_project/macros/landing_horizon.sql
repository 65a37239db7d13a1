{#-
    capture_landing_horizon(force=false): the pre-hook of every district_replace model (step 1 in
    district_replace.sql): the landing horizon per district, in pg_temp.landing_horizon, before the model
    reads landing. In an incremental run of a model with a landing key (state_delta_active()) it also
    collects the landing keys the run must rebuild (capture_state_changes()).
-#}
{% macro capture_landing_horizon(force=false) -%}
    {%- if force or uses_district_replace() -%}
        {%- if state_delta_active() -%}
            {%- do run_query(landing_horizon_sql()) -%}
    {{ capture_state_changes() }}
        {%- else -%}
    {{ landing_horizon_sql() }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{% macro landing_horizon_sql() -%}
    create temporary table landing_horizon on commit drop as
    select district_code, max(batch_id) as landing_batch_id
    from landing.load_batch
    group by district_code
{%- endmacro %}


{#-
    capture_state_changes(): per selected district, what an incremental run of this state model does, in
    pg_temp.state_delta (district_code, mode), and the landing keys it rebuilds, in
    pg_temp.state_changed_keys (district_code, key):

      full   the model has no state.model_build row for the district (never built, or the record was
             lost), the district was never loaded, or its landing horizon went back (landing reset):
             every landing key of the district, and the strategy first deletes all its rows.
      delta  a landing batch after the recorded horizon may have changed the model's landing table: the
             keys of every landing row stamped with a later batch, deleted rows included (their state
             rows go, nothing comes back for them).
      skip   no landing batch since the recorded horizon, or the loader's landing.load_log shows that
             every such batch left this table unchanged: nothing to read or write.

    The keys are read with the district code as a literal, so PostgreSQL scans that district's landing
    partition only. Rows of batches committed after the horizon was captured may be read too; they are
    recorded as not yet incorporated (the horizon is what model_build keeps) and processed again by the
    next run, never skipped.
-#}
{% macro capture_state_changes() -%}
    {%- set key = state_delta_key() -%}
    {%- set landing_table = 'landing.' ~ adapter.quote(this.identifier) -%}
    {%- set districts = selected_districts() -%}
    {%- set plan = [] -%}
    {%- if districts | length > 0 -%}
        {%- set rows = run_query(
            "select selected.district_code, build.landing_batch_id as previous, horizon.landing_batch_id as horizon,"
            ~ " exists (select 1 from landing.load_batch as batch"
            ~ "   where batch.district_code = selected.district_code and batch.batch_id > build.landing_batch_id"
            ~ "   and not exists (select 1 from landing.load_log as log where log.batch_id = batch.batch_id"
            ~ "     and log.table_name = '" ~ this.identifier ~ "'"
            ~ "     and log.rows_inserted + log.rows_updated + log.rows_deleted = 0)) as changed"
            ~ " from (values " ~ district_values(districts) ~ ") as selected (district_code)"
            ~ " left join state.model_build as build on build.model_name = '" ~ this.identifier ~ "'"
            ~ "   and build.district_code = selected.district_code"
            ~ " left join pg_temp.landing_horizon as horizon on horizon.district_code = selected.district_code"
            ~ " order by selected.district_code").rows -%}
        {%- for row in rows -%}
            {%- if row['previous'] is none or row['horizon'] is none or row['previous'] > row['horizon'] -%}
                {%- do plan.append({'district_code': row['district_code'], 'mode': 'full', 'after': none}) -%}
            {%- elif row['changed'] -%}
                {%- do plan.append({'district_code': row['district_code'], 'mode': 'delta',
                                    'after': row['previous']}) -%}
            {%- else -%}
                {%- do plan.append({'district_code': row['district_code'], 'mode': 'skip', 'after': none}) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set work = plan | rejectattr('mode', 'equalto', 'skip') | list -%}
    {%- set modes = [] -%}
    {%- for district in plan -%}
        {%- do modes.append(district.district_code ~ ' ' ~ district.mode) -%}
    {%- endfor -%}
    {{ log(this.identifier ~ ': ' ~ (modes | join(', ') or 'no districts'), info=false) }}
    create temporary table state_delta (district_code text primary key, mode text not null) on commit drop;
    {%- if plan | length > 0 %}
    insert into pg_temp.state_delta (district_code, mode) values
    {%- for district in plan %}
        ('{{ district.district_code }}', '{{ district.mode }}'){{ ',' if not loop.last }}
    {%- endfor %};
    {%- endif %}
    create temporary table state_changed_keys on commit drop as
    {%- for district in work %}
    select district_code, {{ adapter.quote(key) }} as key
    from {{ landing_table }}
    where district_code = '{{ district.district_code }}'
        {%- if district.mode == 'delta' %} and _batch_id > {{ district.after }}{% endif %}
    {{ 'union all' if not loop.last }}
    {%- else %}
    select district_code, {{ adapter.quote(key) }} as key from {{ landing_table }} where false
    {%- endfor %};
    analyze pg_temp.state_changed_keys
{%- endmacro %}


{% macro district_values(codes) -%}
    {%- for code in codes %}('{{ code | replace("'", "''") }}'){{ ', ' if not loop.last }}{% endfor -%}
{%- endmacro %}
