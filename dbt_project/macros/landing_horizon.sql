{#-
    capture_landing_horizon(force=false): the pre-hook of every district_replace model (step 1 in
    district_replace.sql): the landing horizon per district, in pg_temp.landing_horizon, before the model
    reads landing.
-#}
{% macro capture_landing_horizon(force=false) -%}
    {%- if force or uses_district_replace() -%}
    create temporary table landing_horizon on commit drop as
    select district_code, max(batch_id) as landing_batch_id
    from landing.load_batch
    group by district_code
    {%- endif -%}
{%- endmacro %}
