{#-
    Backdated changes (docs/domain.md, "Backdated changes"): per build of att_day_aggregation and selected
    district, the attendance rows its landing window changed that are dated before the district's previous
    as-of date, and how many student-days of the aggregation they changed: the changes a nightly job that
    only looks at the latest day would miss. One row per build and district in state.backdated_change.

    att_day_aggregation_backdated_collect(target_relation, plan, replace_table), before the build:
        pg_temp.backdated_change__rows   the window's changed attendance rows dated before the previous
                                         as-of date: inserted, changed (its values before the window differ
                                         from now) or deleted, with the student-day before and after
        pg_temp.backdated_change__days   their student-days (before and after)
        pg_temp.backdated_change__before the aggregation's rows of those student-days before the build
    att_day_aggregation_backdated_record(target_relation, plan, as_of, replace_table, unchanged), after it:
        compares those rows with the built ones (changed, added or removed student-days), appends the rows
        of state.backdated_change and logs one line per district.

    A row's state before the window is its earliest previous image in landing.superseded_row within the
    window; a row without one was inserted in the window (or, flagged deleted, deleted with the values it
    still has). Measured for every district with an earlier build, whether updated or rebuilt whole
    (--full-refresh): a rebuild is compared with the partition it replaces. Not applicable (null counts)
    on a district's first build and when the whole table is replaced (other shape).
-#}

{% macro att_day_aggregation_backdated_measured(plan, replace_table) -%}
    {%- set measured = [] -%}
    {%- for district in plan
            if not replace_table and district.previous_as_of is not none and district.previous_horizon is not none
            and district.horizon is not none -%}
        {%- do measured.append(district) -%}
    {%- endfor -%}
    {{- return(measured) -}}
{%- endmacro %}


{% macro att_day_aggregation_backdated_collect(target_relation, plan, replace_table) -%}
    {#- Only a district with landing batches in its window has changed rows to read. -#}
    {%- set measured = [] -%}
    {%- for district in att_day_aggregation_backdated_measured(plan, replace_table)
            if district.horizon > district.previous_horizon -%}
        {%- do measured.append(district) -%}
    {%- endfor -%}
    {%- call statement('att_day_aggregation_backdated_collect') -%}
        drop table if exists pg_temp.backdated_change__rows;
        create temporary table backdated_change__rows on commit drop as
        {{ att_day_aggregation_backdated_rows(measured) | indent(8) }};

        analyze pg_temp.backdated_change__rows;

        drop table if exists pg_temp.backdated_change__days;
        create temporary table backdated_change__days on commit drop as
        select district_code, before_person_id as person_id, before_calendar_id as calendar_id, before_date as date
        from pg_temp.backdated_change__rows
        where before_date is not null
        union
        select district_code, after_person_id, after_calendar_id, after_date
        from pg_temp.backdated_change__rows
        where after_date is not null;

        -- Statistics first: a few thousand student-days are looked up in the aggregation's key index; an
        -- unanalyzed table can make the planner scan every partition instead.
        analyze pg_temp.backdated_change__days;

        drop table if exists pg_temp.backdated_change__before;
        create temporary table backdated_change__before on commit drop as
        select existing.*
        -- A table replaced whole (or built for the first time) is not measured: nothing to keep.
        from {{ 'pg_temp.att_day_aggregation__columns' if replace_table else target_relation }} as existing
        inner join pg_temp.backdated_change__days as days
            on existing.district_code = days.district_code
            and existing.calendar_id = days.calendar_id
            and existing.person_id = days.person_id
            and existing.date = days.date;
    {%- endcall -%}
{%- endmacro %}


{% macro att_day_aggregation_backdated_record(target_relation, plan, as_of, replace_table, unchanged) -%}
    {%- if plan | length == 0 -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set measured = att_day_aggregation_backdated_measured(plan, replace_table)
        | map(attribute='district_code') | list -%}
    {%- set query -%}
        with
        student_days as (
            select
                days.district_code,
                count(*) filter (where to_jsonb(before_build) is distinct from to_jsonb(after_build)) as changed
            from pg_temp.backdated_change__days as days
            left join pg_temp.backdated_change__before as before_build
                on days.district_code = before_build.district_code
                and days.calendar_id = before_build.calendar_id
                and days.person_id = before_build.person_id
                and days.date = before_build.date
            left join {{ target_relation }} as after_build
                on days.district_code = after_build.district_code
                and days.calendar_id = after_build.calendar_id
                and days.person_id = after_build.person_id
                and days.date = after_build.date
            group by days.district_code
        ),

        attendance_rows as (
            select
                district_code,
                count(*) filter (where change = 'inserted') as inserted,
                count(*) filter (where change = 'changed') as changed,
                count(*) filter (where change = 'deleted') as deleted
            from pg_temp.backdated_change__rows
            group by district_code
        ),

        built (district_code, build_mode, previous_as_of_date, measured) as (
            values
            {%- for district in plan %}
            ('{{ district.district_code }}',
             '{{ 'unchanged' if district.district_code in unchanged else ('rebuilt' if district.mode == 'full' else 'updated') }}',
             {{ "date '" ~ district.previous_as_of ~ "'" if district.previous_as_of is not none else 'null::date' }},
             {{ 'true' if district.district_code in measured else 'false' }})
            {{- ',' if not loop.last }}
            {%- endfor %}
        )

        insert into state.backdated_change (
            invocation_id, origin, built_at, district_code, build_mode, previous_as_of_date, as_of_date,
            backdated_inserted, backdated_changed, backdated_deleted, backdated_rows, student_days_changed
        )
        select
            '{{ invocation_id }}',
            {{ run_origin() }},
            clock_timestamp(),
            built.district_code,
            built.build_mode,
            built.previous_as_of_date,
            date '{{ as_of }}',
            case when built.measured then coalesce(attendance_rows.inserted, 0) end,
            case when built.measured then coalesce(attendance_rows.changed, 0) end,
            case when built.measured then coalesce(attendance_rows.deleted, 0) end,
            case when built.measured
                then coalesce(attendance_rows.inserted + attendance_rows.changed + attendance_rows.deleted, 0) end,
            case when built.measured then coalesce(student_days.changed, 0) end
        from built
        left join attendance_rows on built.district_code = attendance_rows.district_code
        left join student_days on built.district_code = student_days.district_code
        returning district_code, previous_as_of_date::text, backdated_rows, backdated_inserted, backdated_changed,
            backdated_deleted, student_days_changed
    {%- endset -%}
    {%- set result = run_query(query) -%}
    {%- for row in result.rows | sort(attribute='district_code') -%}
        {%- if row['backdated_rows'] is none -%}
            {{ log('backdated changes ' ~ row['district_code'] ~ ': not measured (first build of the district, or the table was replaced)', info=true) }}
        {%- else -%}
            {{ log('backdated changes ' ~ row['district_code'] ~ ': ' ~ row['backdated_rows']
                   ~ ' attendance row(s) dated before ' ~ (row['previous_as_of_date'] or 'the previous as-of date')
                   ~ ' (' ~ row['backdated_inserted'] ~ ' inserted, ' ~ row['backdated_changed'] ~ ' changed, '
                   ~ row['backdated_deleted'] ~ ' deleted), ' ~ row['student_days_changed']
                   ~ ' student-day(s) changed', info=true) }}
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}


{#- The select of pg_temp.backdated_change__rows: the window's changed attendance rows, classified, dated
    before the previous as-of date. -#}
{% macro att_day_aggregation_backdated_rows(measured) -%}
    {%- set data_columns = ['attendance_id', 'person_id', 'calendar_id', 'period_id', 'date', 'status', 'excuse',
                            'excuse_id', 'present_minutes', 'modified_date'] -%}
    {{ att_day_aggregation_backdated_states(measured) }}
    alive as (
        select
            district_code,
            attendance_id,
            case when not (before_row ->> '_deleted')::boolean then before_row end as before_row,
            after_row
        from states
    ),

    classified as (
        select
            alive.district_code,
            alive.attendance_id,
            case
                when alive.before_row is null then 'inserted'
                when alive.after_row is null then 'deleted'
                else 'changed'
            end as change,
            (alive.before_row ->> 'person_id')::integer as before_person_id,
            (alive.before_row ->> 'calendar_id')::integer as before_calendar_id,
            (alive.before_row ->> 'date')::date as before_date,
            (alive.after_row ->> 'person_id')::integer as after_person_id,
            (alive.after_row ->> 'calendar_id')::integer as after_calendar_id,
            (alive.after_row ->> 'date')::date as after_date,
            window_.previous_as_of
        from alive
        inner join window_ on alive.district_code = window_.district_code
        where (alive.before_row is not null or alive.after_row is not null)
            -- Changed back to what it was within the window: not a change.
            and (
                alive.before_row is null or alive.after_row is null
                {%- for column in data_columns %}
                or alive.before_row -> '{{ column }}' is distinct from alive.after_row -> '{{ column }}'
                {%- endfor %}
            )
    )

    select
        district_code,
        attendance_id,
        change,
        before_person_id,
        before_calendar_id,
        before_date,
        after_person_id,
        after_calendar_id,
        after_date
    from classified
    where before_date < previous_as_of or after_date < previous_as_of;
{%- endmacro %}


{#- The CTEs window_ (the measured districts' batch windows) and states (each changed attendance row's image
    before the window and now, null where it did not exist or was deleted), ending with a comma. -#}
{% macro att_day_aggregation_backdated_states(measured) -%}
    with
    window_ (district_code, low_batch_id, high_batch_id, previous_as_of) as (
        select null::text, null::bigint, null::bigint, null::date where false
        {%- for district in measured %}
        union all
        select '{{ district.district_code }}', {{ district.previous_horizon }}::bigint,
            {{ district.horizon }}::bigint, date '{{ district.previous_as_of }}'
        {%- endfor %}
    ),

    first_images as materialized (
        select distinct on (superseded.district_code, superseded.row_id)
            superseded.district_code,
            superseded.row_id,
            superseded.old_row
        from landing.superseded_row as superseded
        inner join window_
            on superseded.district_code = window_.district_code
            and superseded.batch_id > window_.low_batch_id
            and superseded.batch_id <= window_.high_batch_id
        where superseded.table_name = 'attendance'
        order by superseded.district_code asc, superseded.row_id asc, superseded.batch_id asc
    ),

    -- One branch per district, so each reads only its district's landing partition. Only rows that can be
    -- backdated: dated before the previous as-of date now, or changed in the window (their image may be);
    -- the new day's rows, the bulk of a nightly window, are left out before any jsonb is made.
    current_rows as (
        select null::text as district_code, null::integer as attendance_id, null::jsonb as now_row where false
        {%- for district in measured %}
        union all
        select attendance.district_code, attendance.attendance_id, to_jsonb(attendance) as now_row
        from landing.attendance as attendance
        where attendance.district_code = '{{ district.district_code }}'
            and attendance._batch_id > {{ district.previous_horizon }}
            and attendance._batch_id <= {{ district.horizon }}
            and (
                attendance.date < date '{{ district.previous_as_of }}'
                or attendance.attendance_id in (
                    select first_images.row_id from first_images
                    where first_images.district_code = '{{ district.district_code }}'
                )
            )
        {%- endfor %}
    ),

    -- A row without an image was alive before the window only if the window deleted it. Joined on plain
    -- columns: on jsonb expressions the planner cannot estimate the join and may loop over every pair.
    states as (
        select
            current_rows.district_code,
            current_rows.attendance_id,
            coalesce(first_images.old_row, case when (current_rows.now_row ->> '_deleted')::boolean
                then current_rows.now_row || '{"_deleted": false}' end) as before_row,
            case when not (current_rows.now_row ->> '_deleted')::boolean then current_rows.now_row end
                as after_row
        from current_rows
        left join first_images
            on first_images.district_code = current_rows.district_code
            and first_images.row_id = current_rows.attendance_id
    ),

{%- endmacro %}
