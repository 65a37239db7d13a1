{% macro att_day_aggregation_partition_name(relation, district_code, staging=false) -%}
    {{- relation.identifier ~ ('__dbt_new' if staging else '') ~ '__' ~ (district_code | lower) -}}
{%- endmacro %}


{#- Whole districts: each district's rows into a new table (`create table as`, which writes far faster
    than an insert routed through the partitioned table), indexed, then swapped in for its partition. -#}
{% macro att_day_aggregation_rebuild(target_relation, existing_relation, districts, replace_table) -%}
    {%- if districts | length > 0 -%}
        {%- do att_day_aggregation_stage('attendance_days', {'districts': districts}) -%}
        {%- call statement('att_day_aggregation_stage_index') -%}
            create index on pg_temp.att_day_aggregation__attendance_days using brin (district_code);
        {%- endcall -%}
    {%- endif -%}

    {%- for code in districts -%}
        {%- set new_name = att_day_aggregation_partition_name(target_relation, code, staging=true) -%}
        {%- call statement('att_day_aggregation_rebuild_district') -%}
            {{ att_day_aggregation_planner(true) }}
            drop table if exists {{ target_relation.schema }}.{{ new_name }};
            -- No autovacuum for the inserts of the build itself (it is analyzed below): one running on a
            -- partition when the next refresh swaps it makes that swap wait for it. Deletes by incremental
            -- runs still trigger autovacuum as usual.
            create table {{ target_relation.schema }}.{{ new_name }}
                with (autovacuum_vacuum_insert_threshold = -1) as
            {{ att_day_aggregation_render({
                'districts': [code], 'attendance_days': 'pg_temp.att_day_aggregation__attendance_days'}) }};
            {{ att_day_aggregation_not_null(target_relation.schema ~ '.' ~ new_name) }}
            create unique index {{ new_name }}_key
                on {{ target_relation.schema }}.{{ new_name }} (calendar_id, person_id, date);
            {{ att_day_aggregation_planner(false) }}
        {%- endcall -%}
    {%- endfor -%}

    {%- call statement('att_day_aggregation_swap') -%}
        {%- if replace_table %}
        drop table if exists {{ target_relation }} cascade;
        create table {{ target_relation }} (like pg_temp.att_day_aggregation__columns)
            partition by list (district_code);
        {%- endif %}
        {%- for code in districts %}
        {%- set new_name = att_day_aggregation_partition_name(target_relation, code, staging=true) %}
        {%- set final_name = att_day_aggregation_partition_name(target_relation, code) %}
        drop table if exists {{ target_relation.schema }}.{{ final_name }};
        alter table {{ target_relation.schema }}.{{ new_name }} rename to {{ final_name }};
        alter index {{ target_relation.schema }}.{{ new_name }}_key rename to {{ final_name }}_key;
        alter table {{ target_relation }} attach partition {{ target_relation.schema }}.{{ final_name }}
            for values in ('{{ code }}');
        {%- endfor %}
        drop table if exists pg_temp.att_day_aggregation__attendance_days;
        -- Statistics now, from small samples (cheap): the next incremental run's lookups need them, and
        -- autovacuum never analyzes a partitioned table itself.
        set local default_statistics_target = 10;
        {%- for code in districts %}
        analyze {{ target_relation.schema }}.{{ att_day_aggregation_partition_name(target_relation, code) }};
        {%- endfor %}
        analyze {{ target_relation }};
        reset default_statistics_target;
    {%- endcall -%}
    {%- if existing_relation is not none and replace_table -%}
        {%- do adapter.cache_dropped(existing_relation) -%}
    {%- endif -%}
    {%- do adapter.cache_added(target_relation) -%}
{%- endmacro %}


{#- The NOT NULL constraints declared in the model's YAML (column_constraints.sql), on a new partition before
    it is attached: PostgreSQL attaches a partition only if it has every NOT NULL of the partitioned table
    (one scan of the new table, which also refuses a NULL there, naming the column). -#}
{% macro att_day_aggregation_not_null(table_name) -%}
    {%- set columns = not_null_columns() -%}
    {%- if columns | length > 0 -%}
            alter table {{ table_name }}
            {%- for column in columns %}
                alter column {{ adapter.quote(column) }} set not null{{ ',' if not loop.last else ';' }}
            {%- endfor %}
    {%- endif -%}
{%- endmacro %}
