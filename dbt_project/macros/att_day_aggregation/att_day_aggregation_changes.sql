{#-
    att_day_aggregation_changes(windows, codes): the changed areas of the incremental districts
    (pg_temp.att_day_aggregation__changed_<area>), from the landing rows a load in each district's window
    changed and from the previous images of the rows it updated (landing.superseded_row). See
    att_day_aggregation_build_scope for what each area means.
-#}

{% macro att_day_aggregation_changes(windows, codes) -%}
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
            'attendance', 'attendance_excuse', 'enrollment', 'calendar', 'day', 'period', 'period_schedule'
        );

        -- Attendance rows changed in the window: their student-day now and before.
        drop table if exists pg_temp.att_day_aggregation__changed_days;
        create temporary table att_day_aggregation__changed_days on commit drop as
        select attendance.district_code, attendance.person_id, attendance.calendar_id, attendance.date
        from (
            {{- att_day_aggregation_landing_changes('attendance', 'person_id, calendar_id, date', windows) | indent(4) }}
        ) as attendance
        union all
        select
            district_code,
            (old_row ->> 'person_id')::integer,
            (old_row ->> 'calendar_id')::integer,
            (old_row ->> 'date')::date
        from pg_temp.att_day_aggregation__superseded
        where table_name = 'attendance';

        -- Excuse codes changed in the window (the key of a code never changes).
        drop table if exists pg_temp.att_day_aggregation__changed_excuses;
        create temporary table att_day_aggregation__changed_excuses on commit drop as
        select excuse.district_code, excuse.excuse_id
        from (
            {{- att_day_aggregation_landing_changes('attendance_excuse', 'excuse_id', windows) | indent(4) }}
        ) as excuse;

        -- Enrollments changed in the window: their student's calendar now and before.
        drop table if exists pg_temp.att_day_aggregation__changed_students;
        create temporary table att_day_aggregation__changed_students on commit drop as
        select enrollment.district_code, enrollment.person_id, enrollment.calendar_id
        from (
            {{- att_day_aggregation_landing_changes('enrollment', 'person_id, calendar_id', windows) | indent(4) }}
        ) as enrollment
        union
        select
            district_code,
            (old_row ->> 'person_id')::integer,
            (old_row ->> 'calendar_id')::integer
        from pg_temp.att_day_aggregation__superseded
        where table_name = 'enrollment';

        -- Periods and period schedules changed in the window: their schedules, now and before.
        drop table if exists pg_temp.att_day_aggregation__changed_schedules;
        create temporary table att_day_aggregation__changed_schedules on commit drop as
        select period.district_code, period.period_schedule_id
        from (
            {{- att_day_aggregation_landing_changes('period', 'period_schedule_id', windows) | indent(4) }}
        ) as period
        union
        select district_code, (old_row ->> 'period_schedule_id')::integer
        from pg_temp.att_day_aggregation__superseded
        where table_name = 'period'
        union
        select schedule.district_code, schedule.period_schedule_id
        from (
            {{- att_day_aggregation_landing_changes('period_schedule', 'period_schedule_id', windows) | indent(4) }}
        ) as schedule;

        -- Calendars changed in the window (thresholds): whole calendars.
        drop table if exists pg_temp.att_day_aggregation__changed_calendars;
        create temporary table att_day_aggregation__changed_calendars on commit drop as
        select calendar.district_code, calendar.calendar_id
        from (
            {{- att_day_aggregation_landing_changes('calendar', 'calendar_id', windows) | indent(4) }}
        ) as calendar;

        -- Days changed in the window, now and before, and every day on a changed period schedule: those
        -- calendar dates, for every student.
        drop table if exists pg_temp.att_day_aggregation__changed_dates;
        create temporary table att_day_aggregation__changed_dates on commit drop as
        select day.district_code, day.calendar_id, day.date
        from (
            {{- att_day_aggregation_landing_changes('day', 'calendar_id, date', windows) | indent(4) }}
        ) as day
        union
        select district_code, (old_row ->> 'calendar_id')::integer, (old_row ->> 'date')::date
        from pg_temp.att_day_aggregation__superseded
        where table_name = 'day'
        union
        select day.district_code, day.calendar_id, day.date
        from {{ ref('day') }} as day
        where day.{{ district_filter('district_code', codes) }}
            and (day.district_code, day.period_schedule_id) in (
                select district_code, period_schedule_id from pg_temp.att_day_aggregation__changed_schedules
            );

        analyze pg_temp.att_day_aggregation__changed_days;
        analyze pg_temp.att_day_aggregation__changed_excuses;
        analyze pg_temp.att_day_aggregation__changed_students;
        analyze pg_temp.att_day_aggregation__changed_calendars;
        analyze pg_temp.att_day_aggregation__changed_dates;
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
