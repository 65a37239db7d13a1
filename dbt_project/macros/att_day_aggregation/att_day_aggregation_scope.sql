{#-
    att_day_aggregation_build_scope(target_relation, windows, as_of)
        Fills pg_temp.att_day_aggregation__scope with the (district_code, person_id, calendar_id, date)
        keys to recompute for the incremental districts: the keys of existing rows in a changed area (to
        delete) plus every enrolled day in it up to the as-of date (candidates; the model keeps the
        student-days among them). Changed areas, from landing rows whose _batch_id is in the window
        (deleted rows stay in landing with their last values) and from the previous images of updated rows
        in landing.superseded_row:
          attendance row                    -> its student-day, before and after the change
          attendance_excuse row             -> the student-days of attendance rows using that code
          enrollment row                    -> its student's calendar, before and after
          calendar row                      -> the whole calendar
          day row                           -> that calendar date, before and after
          period, period_schedule row       -> every calendar date whose day follows that schedule
          as-of date moved forward          -> the new days, for every enrolled student
          as-of date moved back             -> the rows past the new as-of date
-#}

{% macro att_day_aggregation_build_scope(target_relation, windows, as_of) -%}
    {%- set codes = windows | map(attribute='district_code') | list -%}
    {%- set backward = windows | selectattr('previous_as_of', 'gt', as_of) | list -%}
    {#- The changed areas keyed by part of a student-day (students, calendars, dates): each contributes its
        existing rows (to delete) and its enrolled days. (The days area holds whole keys; the others only
        feed areas derived from them.) -#}
    {%- set student_day = ['person_id', 'calendar_id', 'date'] -%}
    {%- set areas = [] -%}
    {%- for area in att_day_aggregation_changed_areas()
            if area.columns != student_day and area.columns | reject('in', student_day) | list == [] -%}
        {%- do areas.append(area) -%}
    {%- endfor -%}

    {%- call statement('att_day_aggregation_window') -%}
        drop table if exists pg_temp.att_day_aggregation__window;
        create temporary table att_day_aggregation__window (
            district_code text primary key,
            low_batch_id bigint not null,
            high_batch_id bigint not null,
            low_as_of date not null
        ) on commit drop;
        insert into pg_temp.att_day_aggregation__window values
        {%- for window in windows %}
            ('{{ window.district_code }}', {{ window.previous_horizon }}, {{ window.horizon }},
             date '{{ window.previous_as_of }}')
            {{- ',' if not loop.last }}
        {%- endfor %};
        analyze pg_temp.att_day_aggregation__window;
    {%- endcall -%}

    {%- do att_day_aggregation_changes(windows, codes) -%}

    {%- call statement('att_day_aggregation_scope') -%}
        drop table if exists pg_temp.att_day_aggregation__scope;
        create temporary table att_day_aggregation__scope on commit drop as
        with
        enrolled_days as not materialized (
            -- Every enrolled day up to the as-of date, whatever the enrollment or the day says: a superset
            -- of the student-days the model can produce in an area.
            select enrollment.district_code, enrollment.person_id, enrollment.calendar_id, day.date
            from {{ ref('enrollment') }} as enrollment
            join {{ ref('day') }} as day
                on day.district_code = enrollment.district_code
                and day.calendar_id = enrollment.calendar_id
                and day.date >= enrollment.start_date
                and day.date <= coalesce(enrollment.end_date, day.date)
            where enrollment.{{ district_filter('district_code', codes) }}
                and day.date <= {{ as_of_date() }}
        ),

        keys as (
            select district_code, person_id, calendar_id, date
            from pg_temp.att_day_aggregation__changed_days
            {%- for area in areas %}
            {%- for rows in ('existing', 'enrolled_days') %}
            union all
            select {{ rows }}.district_code, {{ rows }}.person_id, {{ rows }}.calendar_id, {{ rows }}.date
            from {{ target_relation if rows == 'existing' else 'enrolled_days' }} as {{ rows }}
            join pg_temp.att_day_aggregation__changed_{{ area.area }} as changed
                on changed.district_code = {{ rows }}.district_code
                {%- for column in area.columns %}
                and changed.{{ column }} = {{ rows }}.{{ column }}
                {%- endfor %}
            {%- endfor %}
            {%- endfor %}
            union all
            -- The days the as-of date reached since the district's last run.
            select enrolled_days.*
            from enrolled_days
            join pg_temp.att_day_aggregation__window as window_
                on window_.district_code = enrolled_days.district_code
                and enrolled_days.date > window_.low_as_of
            {%- for window in backward %}
            union all
            -- {{ window.district_code }}: the as-of date moved back, its rows past it go
            select existing.district_code, existing.person_id, existing.calendar_id, existing.date
            from {{ target_relation }} as existing
            where existing.district_code = '{{ window.district_code }}'
                and existing.date > {{ as_of_date() }}
            {%- endfor %}
        )

        select distinct district_code, person_id, calendar_id, date
        from keys
        where {{ district_filter('district_code', codes) }};

        analyze pg_temp.att_day_aggregation__scope;
    {%- endcall -%}
{%- endmacro %}
