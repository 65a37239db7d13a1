{#-
    relationships_composite (integrity): every child row's composite foreign key (e.g. district_code,
    calendar_id) exists in the parent (e.g. calendar's district_code, calendar_id). Rows with a null in
    any key column are not checked (an optional reference).
    Catches: a child without its parent, e.g. after resyncing attendance without Check Dependencies.
    Resolve: resync the parent table for the failing districts (or the child with Check Dependencies).
-#}
{% test relationships_composite(model, columns, to, fields) %}
    {%- if columns | length != fields | length -%}
        {{ exceptions.raise_compiler_error("relationships_composite: columns and fields differ in length") }}
    {%- endif -%}
    with child as (
        select {{ columns | join(', ') }}
        from {{ model }}
        where {% for column in columns %}{{ column }} is not null{{ ' and ' if not loop.last }}{% endfor %}
    ),

    parent as (
        select {{ fields | join(', ') }}
        from {{ to }}
    )

    select child.*
    from child
    where not exists (
        select 1
        from parent
        where {% for column in columns %}parent.{{ fields[loop.index0] }} = child.{{ column }}{{ ' and ' if not loop.last }}{% endfor %}
    )
{% endtest %}
