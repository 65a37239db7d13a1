{#- pg_temp.att_day_aggregation__columns: an empty table with the model's columns. -#}
{% macro att_day_aggregation_model_columns() -%}
    {%- call statement('att_day_aggregation_columns') -%}
        drop table if exists pg_temp.att_day_aggregation__columns;
        create temporary table att_day_aggregation__columns on commit drop as
        select * from (
            {{ att_day_aggregation_render({'districts': ['-']}) }}
        ) as model_rows
        limit 0;
    {%- endcall -%}
{%- endmacro %}


{#- Whether `relation` is a partitioned table with exactly the model's columns (names and types; NOT NULL is
    the column_constraints() post-hook's business, so a table from before it declared them is kept). -#}
{% macro att_day_aggregation_same_shape(relation) -%}
    {%- set query -%}
        with columns as (
            select
                attrelid,
                string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' order by attnum) as list
            from pg_attribute
            where attnum > 0 and not attisdropped
                and attrelid in ('pg_temp.att_day_aggregation__columns'::regclass, to_regclass('{{ relation }}'))
            group by attrelid
        )
        select
            (select relkind = 'p' from pg_class where oid = to_regclass('{{ relation }}'))
            and (select list from columns where attrelid = to_regclass('{{ relation }}'))
                = (select list from columns where attrelid = 'pg_temp.att_day_aggregation__columns'::regclass)
    {%- endset -%}
    {%- set result = run_query(query) -%}
    {{- return(result.rows[0][0] is true) -}}
{%- endmacro %}
