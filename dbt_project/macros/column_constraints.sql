{#-
    column_constraints(): post-hook of every state and reports model (dbt_project.yml): the NOT NULL
    constraints the model's YAML declares on its columns (`constraints: [{type: not_null}]`), made real on
    the table.

    dbt applies column constraints only to models with an enforced contract, and only when it creates the
    table; these tables are incremental and built by the project's own strategies, so the hook adds any
    declared constraint the table lacks (the first build, or the first build after a column was declared).
    From then on PostgreSQL refuses a NULL in the insert itself, naming the column, and the model's whole
    transaction rolls back: the table stays as it was. A not_null data test would instead scan the whole
    table after every build, once per column, and fail only after the rows were written.

    Adding a constraint scans the table once (and fails the build, naming the column, if a NULL is
    there); when every constraint is in place the hook is one catalog query. A declared column the table
    does not have fails the build too, so a typo in the YAML cannot silently drop a guarantee.
-#}
{% macro column_constraints() -%}
    {%- set required = not_null_columns() -%}
    {%- if execute and required | length > 0 -%}
    do $column_constraints$
    declare
        table_name constant regclass := '{{ this.include(database=false) }}'::regclass;
        declared constant text[] := array[{% for column in required %}'{{ column }}'{{ ', ' if not loop.last }}{% endfor %}];
        unknown text;
        missing text;
    begin
        select string_agg(name, ', ') into unknown
        from unnest(declared) as name
        where not exists (
            select from pg_attribute
            where attrelid = table_name and attname = name and attnum > 0 and not attisdropped
        );
        if unknown is not null then
            raise exception 'column_constraints: % has no column(s) %, declared not_null in its YAML',
                table_name, unknown;
        end if;
        select string_agg(format('alter column %I set not null', attname), ', ') into missing
        from pg_attribute
        where attrelid = table_name and attname = any(declared) and not attnotnull;
        if missing is not null then
            execute format('alter table %s %s', table_name, missing);
        end if;
    end
    $column_constraints$
    {%- endif -%}
{%- endmacro %}


{% macro not_null_columns() -%}
    {%- set names = [] -%}
    {%- for name, column in (model.columns or {}).items() -%}
        {%- for constraint in column.constraints or [] -%}
            {%- if constraint.type == 'not_null' and name not in names -%}
                {%- do names.append(name) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{- return(names) -}}
{%- endmacro %}
