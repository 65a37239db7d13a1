{#-
    unique_combination (integrity): no two rows share the same values of the given columns.
    Catches: a composite key (district_code, id) that is not unique, e.g. a district's rows written twice.
    Resolve: find the duplicated keys in the failing rows; rebuild the affected districts.
-#}
{% test unique_combination(model, combination_of_columns) %}
    {%- set columns = combination_of_columns | join(', ') -%}
    select {{ columns }}, count(*) as row_count
    from {{ model }}
    group by {{ columns }}
    having count(*) > 1
{% endtest %}
