{#-
    dbt_role_statement(): `set local role <the profile's role>`, or nothing when the profile names none.
-#}
{% macro dbt_role_statement() -%}
    {%- if target.get('role') -%}
    set local role {{ adapter.quote(target.role) }};
    {%- endif -%}
{%- endmacro %}
