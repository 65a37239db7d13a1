{#-
    record_model_build(force=false, as_of_date=none, districts=none): the post-hook of every district_replace
    model (step 3 in district_replace.sql): the landing horizon, build time, origin (run_origin.sql) and a
    new change sequence number per replaced district, in state.model_build (model_build_table.sql), and
    changed_at when the build may have changed the district's rows (model_build_changed()).
-#}
{% macro record_model_build(force=false, as_of_date=none, districts=none) -%}
    {%- if execute and (force or uses_district_replace()) -%}
        {%- set codes = selected_districts() if districts is none else districts -%}
        {%- if codes | length > 0 -%}
    insert into state.model_build as build
        (model_name, district_code, landing_batch_id, built_at, as_of_date, changed_at, origin, build_seq)
    select '{{ this.identifier }}', replaced.district_code, horizon.landing_batch_id, clock_timestamp(),
           {{ as_of_date if as_of_date is not none else 'cast(null as date)' }}, clock_timestamp(),
           {{ run_origin() }}, nextval('state.model_build_seq')
    from (values {% for code in codes %}('{{ code | replace("'", "''") }}'){{ ', ' if not loop.last }}{% endfor %})
        as replaced (district_code)
    left join pg_temp.landing_horizon as horizon on horizon.district_code = replaced.district_code
    on conflict (model_name, district_code) do update
    set landing_batch_id = excluded.landing_batch_id,
        built_at = excluded.built_at,
        as_of_date = excluded.as_of_date,
        changed_at = case when {{ model_build_changed() }} then excluded.changed_at else build.changed_at end,
        origin = excluded.origin,
        build_seq = excluded.build_seq
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#-
    model_build_changed(): SQL true when this build may have changed the district's rows (`build` is the
    district's previous record, `excluded` the new one): always for a replace, a --full-refresh or a first
    record; for an incremental state table when capture_state_changes() did not skip the district; for
    the aggregation when its horizon or as-of date moved (otherwise it left the district alone).
-#}
{% macro model_build_changed() -%}
    {%- if flags.FULL_REFRESH or state_replace_requested() -%}
        true
    {%- elif state_delta_active() -%}
        build.changed_at is null or exists (
            select from pg_temp.state_delta as delta
            where delta.district_code = excluded.district_code and delta.mode <> 'skip'
        )
    {%- elif uses_district_replace() -%}
        true
    {%- else -%}
        build.changed_at is null
        or build.landing_batch_id is distinct from excluded.landing_batch_id
        or build.as_of_date is distinct from excluded.as_of_date
    {%- endif -%}
{%- endmacro %}
