{#-
    record_model_build(force=false, as_of_date=none, districts=none): the post-hook of every district_replace
    model (step 3 in district_replace.sql): the landing horizon, build time, origin (run_origin.sql) and a
    new change sequence number per replaced district, in state.model_build (model_build_table.sql).
-#}
{% macro record_model_build(force=false, as_of_date=none, districts=none) -%}
    {%- if execute and (force or uses_district_replace()) -%}
        {%- set codes = selected_districts() if districts is none else districts -%}
        {%- if codes | length > 0 -%}
    insert into state.model_build as build
        (model_name, district_code, landing_batch_id, built_at, as_of_date, origin, build_seq)
    select '{{ this.identifier }}', replaced.district_code, horizon.landing_batch_id, clock_timestamp(),
           {{ as_of_date if as_of_date is not none else 'cast(null as date)' }}, {{ run_origin() }},
           nextval('state.model_build_seq')
    from (values {% for code in codes %}('{{ code | replace("'", "''") }}'){{ ', ' if not loop.last }}{% endfor %})
        as replaced (district_code)
    left join pg_temp.landing_horizon as horizon on horizon.district_code = replaced.district_code
    on conflict (model_name, district_code) do update
    set landing_batch_id = excluded.landing_batch_id,
        built_at = excluded.built_at,
        as_of_date = excluded.as_of_date,
        origin = excluded.origin,
        build_seq = excluded.build_seq
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
