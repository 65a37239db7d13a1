{#-
    The changed areas of an incremental run (see att_day_aggregation_build_scope for what each means).

    att_day_aggregation_changed_areas() -> the one list of areas: name, the landing tables whose changed rows
        place a key in it, the key columns, the tables whose updated rows may move to another key (their
        previous images in landing.superseded_row count too), and what the area holds. Each area becomes
        the temp table pg_temp.att_day_aggregation__changed_<area>, in this order (a later area may read
        an earlier one).
    att_day_aggregation_changes(windows, codes) -> creates those tables for the incremental districts
    att_day_aggregation_changed_area(area, windows, codes) -> the select of one area
    att_day_aggregation_landing_changes(table, columns, windows) -> the rows of landing.<table> a load in
        each district's window changed
-#}

{% macro att_day_aggregation_changed_areas() -%}
    {{- return([
        {'area': 'days', 'tables': ['attendance'], 'columns': ['person_id', 'calendar_id', 'date'],
         'previous': ['attendance'],
         'what': 'Attendance rows changed in the window: their student-day now and before.'},
        {'area': 'excuses', 'tables': ['attendance_excuse'], 'columns': ['excuse_id'], 'previous': [],
         'what': 'Excuse codes changed in the window (the key of a code never changes).'},
        {'area': 'students', 'tables': ['enrollment'], 'columns': ['person_id', 'calendar_id'],
         'previous': ['enrollment'],
         'what': "Enrollments changed in the window: their student's calendar now and before."},
        {'area': 'schedules', 'tables': ['period', 'period_schedule'], 'columns': ['period_schedule_id'],
         'previous': ['period'],
         'what': 'Periods and period schedules changed in the window: their schedules, now and before.'},
        {'area': 'calendars', 'tables': ['calendar'], 'columns': ['calendar_id'], 'previous': [],
         'what': 'Calendars changed in the window (thresholds): whole calendars.'},
        {'area': 'dates', 'tables': ['day'], 'columns': ['calendar_id', 'date'], 'previous': ['day'],
         'what': 'Days changed in the window, now and before, and every day on a changed period schedule:'
                 ' those calendar dates, for every student.'},
    ]) -}}
{%- endmacro %}


{% macro att_day_aggregation_changes(windows, codes) -%}
    {%- set areas = att_day_aggregation_changed_areas() -%}
    {%- set tables = [] -%}
    {%- for area in areas -%}
        {%- do tables.extend(area.tables) -%}
    {%- endfor -%}
    {%- call statement('att_day_aggregation_changes') -%}
        drop table if exists pg_temp.att_day_aggregation__superseded;
        create temporary table att_day_aggregation__superseded on commit drop as
        select superseded.table_name, superseded.district_code, superseded.old_row
        from landing.superseded_row as superseded
        join pg_temp.att_day_aggregation__window as window_
            on window_.district_code = superseded.district_code
            and superseded.batch_id > window_.low_batch_id
            and superseded.batch_id <= window_.high_batch_id
        where superseded.table_name in (
            {% for table in tables %}'{{ table }}'{{ ', ' if not loop.last }}{% endfor %}
        );
        {%- for area in areas %}

        -- {{ area.what }}
        drop table if exists pg_temp.att_day_aggregation__changed_{{ area.area }};
        create temporary table att_day_aggregation__changed_{{ area.area }} on commit drop as
        {{- att_day_aggregation_changed_area(area, windows, codes) }};
        {%- endfor %}
        {% for area in areas %}
        analyze pg_temp.att_day_aggregation__changed_{{ area.area }};
        {%- endfor %}
    {%- endcall -%}

    {%- if run_query('select 1 from pg_temp.att_day_aggregation__changed_excuses limit 1').rows | length > 0 -%}
        {%- call statement('att_day_aggregation_excuse_days') -%}
            -- A changed excuse code changes every student-day with a row using it.
            insert into pg_temp.att_day_aggregation__changed_days
            select attendance.district_code, attendance.person_id, attendance.calendar_id, attendance.date
            from {{ ref('attendance') }} as attendance
            where attendance.{{ district_filter('district_code', codes) }}
                and (attendance.district_code, attendance.excuse_id) in (
                    select district_code, excuse_id from pg_temp.att_day_aggregation__changed_excuses
                );
            analyze pg_temp.att_day_aggregation__changed_days;
        {%- endcall -%}
    {%- endif -%}
{%- endmacro %}


{#- The select of one changed area: its tables' changed landing rows, plus the previous images of those
    whose rows may move. The days area enters the scope as keys, deduplicated there, so its rows are not
    deduplicated here; the other areas are joined, so theirs are. The dates area also takes every day on
    a changed schedule (the schedules area comes before it). -#}
{% macro att_day_aggregation_changed_area(area, windows, codes) -%}
    {%- set separator = 'union all' if area.area == 'days' else 'union' -%}
    {%- for table in area.tables %}
        {%- if not loop.first %}
        {{ separator }}
        {%- endif %}
        select {{ table }}.{{ (['district_code'] + area.columns) | join(', ' ~ table ~ '.') }}
        from (
            {{- att_day_aggregation_landing_changes(table, area.columns | join(', '), windows) | indent(4) }}
        ) as {{ table }}
        {%- if table in area.previous %}
        {{ separator }}
        select
            district_code,
            {%- for column in area.columns %}
            (old_row ->> '{{ column }}')::{{ 'date' if column == 'date' else 'integer' }}{{ ',' if not loop.last }}
            {%- endfor %}
        from pg_temp.att_day_aggregation__superseded
        where table_name = '{{ table }}'
        {%- endif %}
    {%- endfor %}
    {%- if area.area == 'dates' %}
        union
        select day.district_code, day.calendar_id, day.date
        from {{ ref('day') }} as day
        where day.{{ district_filter('district_code', codes) }}
            and (day.district_code, day.period_schedule_id) in (
                select district_code, period_schedule_id from pg_temp.att_day_aggregation__changed_schedules
            )
    {%- endif %}
{%- endmacro %}


{#- The rows of landing.<table> that a load in the district's window changed (inserted, updated or flagged
    deleted): one branch per district, so each reads only its district's partition. -#}
{% macro att_day_aggregation_landing_changes(table, columns, windows) -%}
    {%- set branches = [] -%}
    {%- for window in windows if window.horizon > window.previous_horizon -%}
        {%- do branches.append(window) -%}
    {%- endfor -%}
    {%- if branches | length == 0 %}
        select district_code, {{ columns }} from landing.{{ table }} where false
    {%- endif -%}
    {%- for window in branches %}
        select district_code, {{ columns }}
        from landing.{{ table }}
        where district_code = '{{ window.district_code }}'
            and _batch_id > {{ window.previous_horizon }}
            and _batch_id <= {{ window.horizon }}
        {%- if not loop.last %}
        union all
        {%- endif %}
    {%- endfor -%}
{%- endmacro %}
