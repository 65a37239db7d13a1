{#- Incremental districts: delete the scope's rows, insert the model's rows for the scope. -#}
{% macro att_day_aggregation_update(target_relation, windows, as_of) -%}
    {%- set codes = windows | map(attribute='district_code') | list -%}
    {%- do att_day_aggregation_build_scope(target_relation, windows, as_of) -%}
    {%- set options = {'districts': codes, 'scope': 'pg_temp.att_day_aggregation__scope'} -%}
    {#- The scope's attendance rows first (a scan with a hashed probe, no joins to plan). -#}
    {%- do options.update({'attendance': att_day_aggregation_stage('attendance', options, hash_joins_only=false)}) -%}
    {%- do options.update({'attendance_days': att_day_aggregation_stage('attendance_days', options)}) -%}
    {%- call statement('att_day_aggregation_delete_rows') -%}
        {{ att_day_aggregation_planner(false) }}
        -- A district's rows never pass the as-of date of its last run: later keys need no lookup. The keys
        -- to look up go into a table of their own, analyzed, so that the planner sees how few they are (a
        -- nightly's new day is most of the scope and needs none) and probes the partitions' key index
        -- instead of scanning every row of the table.
        drop table if exists pg_temp.att_day_aggregation__stale;
        create temporary table att_day_aggregation__stale on commit drop as
        select scope.district_code, scope.calendar_id, scope.person_id, scope.date
        from pg_temp.att_day_aggregation__scope as scope
        inner join pg_temp.att_day_aggregation__window as window_ on window_.district_code = scope.district_code
        where scope.date <= window_.low_as_of;
        analyze pg_temp.att_day_aggregation__stale;

        delete from {{ target_relation }} as existing
        using pg_temp.att_day_aggregation__stale as stale
        where existing.district_code = stale.district_code
            and existing.calendar_id = stale.calendar_id
            and existing.person_id = stale.person_id
            and existing.date = stale.date;
    {%- endcall -%}
    {%- call statement('att_day_aggregation_insert_rows') -%}
        {{ att_day_aggregation_planner(true) }}
        insert into {{ target_relation }}
        {{ att_day_aggregation_render(options) }};
        {{ att_day_aggregation_planner(false) }}
    {%- endcall -%}
{%- endmacro %}
