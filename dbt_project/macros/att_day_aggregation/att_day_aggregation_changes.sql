{#-
    What an incremental run of att_day_aggregation recomputes (DOMAIN.md, "Aggregated attendance":
    the incremental result must equal the full recompute).

    att_day_aggregation_plan(target_relation, districts, parents, rebuild)
        Per selected district: the batch window and as-of dates of this run, and whether the district is
        rebuilt whole ("full") or incrementally. A district's landing changes are found by batch id in the
        window (previous horizon, horizon]:
          previous horizon = this model's landing_batch_id in state.model_build (the horizon it last
                             recorded for the district),
          horizon          = the smallest landing_batch_id its parent state models recorded for the district
                             (every batch up to it is in every parent table).
        The run records `horizon` as its own. A load committing while a parent builds is therefore read
        again by the next run instead of being skipped, and `dbt build --select att_day_aggregation`
        (parents not rebuilt) processes only what the parents already hold. A district is rebuilt whole
        when asked (--full-refresh), when it was never built, when it has no partition, or when a parent
        has never been built for it (no horizon).

    att_day_aggregation_build_scope(target_relation, windows)
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

{% macro att_day_aggregation_plan(target_relation, districts, parents, rebuild) -%}
    {%- if districts | length == 0 -%}
        {{- return([]) -}}
    {%- endif -%}
    {%- set query -%}
        with selected (district_code) as (
            values {% for code in districts %}('{{ code }}'){{ ', ' if not loop.last }}{% endfor %}
        ),

        parents as (
            select
                district_code,
                count(*) as built,
                count(landing_batch_id) as loaded,
                min(landing_batch_id) as horizon
            from state.model_build
            where model_name in ({% for name in parents %}'{{ name }}'{{ ', ' if not loop.last }}{% endfor %})
            group by district_code
        ),

        previous as (
            select district_code, landing_batch_id, as_of_date
            from state.model_build
            where model_name = '{{ target_relation.identifier }}'
        ),

        partitions as (
            select child.relname
            from pg_inherits
            join pg_class as child on child.oid = pg_inherits.inhrelid
            where pg_inherits.inhparent = to_regclass('{{ target_relation }}')
        )

        select
            selected.district_code,
            case when parents.built = {{ parents | length }} and parents.loaded = {{ parents | length }}
                then parents.horizon end as horizon,
            previous.landing_batch_id as previous_horizon,
            previous.as_of_date::text as previous_as_of,
            exists (
                select 1 from partitions
                where partitions.relname = '{{ target_relation.identifier }}__' || lower(selected.district_code)
            ) as has_partition
        from selected
        left join parents on parents.district_code = selected.district_code
        left join previous on previous.district_code = selected.district_code
        order by selected.district_code
    {%- endset -%}
    {%- set plan = [] -%}
    {%- for row in run_query(query).rows -%}
        {%- set full = rebuild
            or not row['has_partition']
            or row['horizon'] is none
            or row['previous_horizon'] is none
            or row['previous_as_of'] is none
            or row['previous_horizon'] > row['horizon'] -%}
        {%- do plan.append({
            'district_code': row['district_code'],
            'mode': 'full' if full else 'incremental',
            'horizon': row['horizon'],
            'previous_horizon': row['previous_horizon'],
            'previous_as_of': row['previous_as_of'],
        }) -%}
    {%- endfor -%}
    {{- return(plan) -}}
{%- endmacro %}


{% macro att_day_aggregation_build_scope(target_relation, windows, as_of) -%}
    {%- set codes = windows | map(attribute='district_code') | list -%}
    {%- set backward = windows | selectattr('previous_as_of', 'gt', as_of) | list -%}
    {#- Changed areas (pg_temp.att_day_aggregation__changed_<area>) and the columns that place a
        student-day in one: each contributes its existing rows (to delete) and its enrolled days. -#}
    {%- set areas = [
        ('students', ['calendar_id', 'person_id']),
        ('calendars', ['calendar_id']),
        ('dates', ['calendar_id', 'date']),
    ] -%}

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
            {{- att_day_aggregation_landing_changes('attendance', 'person_id, calendar_id, date', windows)
                | indent(4) }}
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
            {%- for area, columns in areas %}
            {%- for rows in ('existing', 'enrolled_days') %}
            union all
            select {{ rows }}.district_code, {{ rows }}.person_id, {{ rows }}.calendar_id, {{ rows }}.date
            from {{ target_relation if rows == 'existing' else 'enrolled_days' }} as {{ rows }}
            join pg_temp.att_day_aggregation__changed_{{ area }} as changed
                on changed.district_code = {{ rows }}.district_code
                {%- for column in columns %}
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
