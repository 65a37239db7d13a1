{#-
    Rendering models/state/att_day_aggregation.sql with options.

    The materialization needs the model's SQL in more than one shape (every student-day of some districts,
    or only the student-days of a scope table; the attendance_days step alone, or the rows built on it).
    It sets the options in the rendering context and renders the model's raw SQL again with dbt's
    render(); the model reads them with att_day_aggregation_option(). A plain compile (dbt compile, unit
    tests) sees no options and gets the full computation for the selected districts.

    att_day_aggregation_option(name, default)  -> the option's value in the current rendering, or default
    att_day_aggregation_render(options)        -> the model's SQL rendered with `options` (a dict)
-#}

{% macro att_day_aggregation_option(name, default=none) -%}
    {%- set options = context.get('att_day_aggregation_render_options') or {} -%}
    {{- return(options.get(name, default)) -}}
{%- endmacro %}


{% macro att_day_aggregation_render(options) -%}
    {%- do context.update({'att_day_aggregation_render_options': options}) -%}
    {%- set rendered = render(model['raw_code']) -%}
    {%- do context.update({'att_day_aggregation_render_options': none}) -%}
    {{- return(rendered) -}}
{%- endmacro %}
