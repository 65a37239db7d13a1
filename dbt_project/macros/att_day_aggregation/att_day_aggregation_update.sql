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
        -- A district's rows never pass the as-of date of its last run: later keys need no lookup.
        delete from {{ target_relation }} as existing
        using pg_temp.att_day_aggregation__scope as scope
        join pg_temp.att_day_aggregation__window as window_ on window_.district_code = scope.district_code
        where existing.district_code = scope.district_code
            and existing.calendar_id = scope.calendar_id
            and existing.person_id = scope.person_id
            and existing.date = scope.date
            and scope.date <= window_.low_as_of;
    {%- endcall -%}
    {%- call statement('att_day_aggregation_insert_rows') -%}
        {{ att_day_aggregation_planner(true) }}
        insert into {{ target_relation }}
        {{ att_day_aggregation_render(options) }};
        {{ att_day_aggregation_planner(false) }}
    {%- endcall -%}
{%- endmacro %}
