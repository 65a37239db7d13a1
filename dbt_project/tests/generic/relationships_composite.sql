{#-
    relationships_composite (integrity): every child row's composite foreign key (e.g. district_code,
    calendar_id) exists in the parent (e.g. calendar's district_code, calendar_id). Rows with a null in
    any key column are not checked (an optional reference).
    Catches: a child without its parent, e.g. after resyncing attendance without Check Dependencies.
    Resolve: resync the parent table for the failing districts (or the child with Check Dependencies).
    Each missing key is returned once (its count of child rows alongside): the child's distinct keys are
    hashed first (a large child has few distinct keys, e.g. att_day_aggregation's days), then looked up in
    the parent. Looking up every child row let PostgreSQL pick a sort of the whole child table (3 to 8 s
    instead of 1 s at BIE size, minutes at Nevada size).
-#}
{% test relationships_composite(model, columns, to, fields) %}
    {%- if columns | length != fields | length -%}
        {{ exceptions.raise_compiler_error("relationships_composite: columns and fields differ in length") }}
    {%- endif -%}
    with child as (
        select {{ columns | join(', ') }}, count(*) as child_rows
        from {{ model }}
        where {% for column in columns %}{{ column }} is not null{{ ' and ' if not loop.last }}{% endfor %}
        group by {{ columns | join(', ') }}
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
