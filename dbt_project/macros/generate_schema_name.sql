{#-
    Schema names are written as given (`+schema: state` builds in `state`, not `<target>_state`):
    the State Edition's schemas are a published interface (docs/architecture.md, "Database").
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
