{#- Run the heavy statements with hash joins only (see the header). -#}
{% macro att_day_aggregation_planner(hash_joins_only) -%}
    set local enable_nestloop = {{ 'off' if hash_joins_only else 'on' }};
    set local enable_mergejoin = {{ 'off' if hash_joins_only else 'on' }};
{%- endmacro %}


{#- pg_temp.att_day_aggregation__<step>: the model's `step` CTE ('attendance' or 'attendance_days') for
    `options`, analyzed, so that the statements reading it are planned on its real size. Returns its name. -#}
{% macro att_day_aggregation_stage(step, options, hash_joins_only=true) -%}
    {%- set stage_options = {'output': step} -%}
    {%- do stage_options.update(options) -%}
    {%- call statement('att_day_aggregation_' ~ step) -%}
        {{ att_day_aggregation_planner(hash_joins_only) }}
        drop table if exists pg_temp.att_day_aggregation__{{ step }};
        create temporary table att_day_aggregation__{{ step }} on commit drop as
        {{ att_day_aggregation_render(stage_options) }};
        analyze pg_temp.att_day_aggregation__{{ step }};
    {%- endcall -%}
    {{- return('pg_temp.att_day_aggregation__' ~ step) -}}
{%- endmacro %}
