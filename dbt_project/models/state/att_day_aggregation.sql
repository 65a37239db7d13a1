{{ config(materialized='att_day_incremental') }}
-- Aggregated attendance: one row per student and instructional day (docs/domain.md, "Aggregated attendance";
-- the rules are spelled out in att_day_aggregation.yml).
--
-- Read plainly (dbt compile, unit tests) this computes every student-day of the selected districts up to the
-- as-of date. The materialization (macros/att_day_aggregation/att_day_incremental.sql) renders it again
-- with options (att_day_aggregation_render / att_day_aggregation_option); every rendering it uses:
--
--   rendering (used by)          | districts       | scope | attendance | attendance_days | output
--   -----------------------------|-----------------|-------|------------|-----------------|----------------
--   plain (compile, unit tests)  | the selection   | -     | -          | -               | rows
--   model columns (shape check)  | ['-'] (no rows) | -     | -          | -               | rows
--   rebuild: stage               | rebuilt ones    | -     | -          | -               | attendance_days
--   rebuild: rows, per district  | one district    | -     | -          | staged          | rows
--   update: stage attendance     | updated ones    | temp  | -          | -               | attendance
--   update: stage days           | updated ones    | temp  | staged     | -               | attendance_days
--   update: rows                 | updated ones    | temp  | staged     | staged          | rows
--
--   districts        the districts to compute (default: the `districts` var, else every district)
--   scope            a temp table of (district_code, person_id, calendar_id, date): compute only those
--                    student-days, and only the attendance rows on them
--   attendance       a temp table already holding the attendance CTE
--   attendance_days  a temp table already holding the attendance_days CTE (built first, so the planner
--                    knows its size and may sort in parallel)
--   output           'rows' (the model's rows), or the CTE 'attendance' or 'attendance_days' alone
-- depends_on: {{ ref('period_schedule') }}
{%- set districts = att_day_aggregation_option('districts') or selected_districts() %}
{%- set scope = att_day_aggregation_option('scope') %}
{%- set staged_attendance = att_day_aggregation_option('attendance') %}
{%- set staged_attendance_days = att_day_aggregation_option('attendance_days') %}
{%- set output = att_day_aggregation_option('output', 'rows') %}

with
{%- if scope %}

-- Read by student_days, in its own `if scope` branch (the lint sees one branch at a time).
scope as not materialized (  -- noqa: ST03
    select
        district_code,
        person_id,
        calendar_id,
        date
    from {{ scope }}
),
{%- endif %}

calendar as (
    select
        district_code,
        calendar_id,
        whole_day_absence_minutes,
        half_day_absence_minutes
    from {{ ref('calendar') }}
    where {{ district_filter('district_code', districts) }}
),

day as not materialized (
    select
        district_code,
        calendar_id,
        date,
        period_schedule_id
    from {{ ref('day') }}
    where {{ district_filter('district_code', districts) }}
        and instruction
        and attendance
        and date <= {{ as_of_date() }}
),

instructional_period as not materialized (
    select
        district_code,
        period_id,
        period_schedule_id,
        period_minutes
    from {{ ref('period') }}
    where {{ district_filter('district_code', districts) }}
        and not non_instructional
),

enrollment as (
    select
        district_code,
        person_id,
        calendar_id,
        start_date,
        end_date
    from {{ ref('enrollment') }}
    where {{ district_filter('district_code', districts) }}
        and service_type in ('P', 'S')
        and not no_show
),

-- Minutes of each attendance day: its schedule's instructional periods (days without one drop out).
school_days as (
    select
        day.district_code,
        day.calendar_id,
        day.date,
        sum(instructional_period.period_minutes) as scheduled_minutes,
        min(calendar.whole_day_absence_minutes) as whole_day_absence_minutes,
        min(calendar.half_day_absence_minutes) as half_day_absence_minutes
    from day
    inner join instructional_period
        on day.district_code = instructional_period.district_code
        and day.period_schedule_id = instructional_period.period_schedule_id
    left join calendar
        on day.district_code = calendar.district_code
        and day.calendar_id = calendar.calendar_id
    group by day.district_code, day.calendar_id, day.date
    having sum(instructional_period.period_minutes) > 0
),

-- Each enrollment minus the days an earlier one of the same student and calendar already covers, so
-- overlapping enrollments yield every day once: [max(start, latest earlier end + 1), end].
enrollment_spans as (
    select
        district_code,
        person_id,
        calendar_id,
        greatest(start_date, max(coalesce(end_date, 'infinity')) over earlier + 1) as start_date,
        coalesce(end_date, 'infinity') as end_date
    from enrollment
    window earlier as (
        partition by district_code, person_id, calendar_id
        order by start_date, end_date nulls last
        rows between unbounded preceding and 1 preceding
    )
),
{%- if staged_attendance_days %}

attendance_days as not materialized (
    select * from {{ staged_attendance_days }}
    where {{ district_filter('district_code', districts) }}
),
{%- else %}

attendance_excuse as (
    select
        district_code,
        excuse_id,
        status,
        excuse
    from {{ ref('attendance_excuse') }}
    where {{ district_filter('district_code', districts) }}
),

attendance as (
    {%- if staged_attendance %}
    select * from {{ staged_attendance }}
    {%- else %}
    select
        district_code,
        attendance_id,
        person_id,
        calendar_id,
        period_id,
        date,
        status,
        excuse,
        excuse_id,
        present_minutes,
        modified_date
    from {{ ref('attendance') }}
    where date <= {{ as_of_date() }}
        and {{ district_filter('district_code', districts) }}
    {%- if scope %}
        -- `not (... not in ...)` makes this one hashed probe per row of the scan, cheaper than the
        -- semi-join `in` becomes.
        and not ((district_code, person_id, calendar_id, date) not in (select * from scope))
    {%- endif %}
    {%- endif %}
),

-- Rows on an attendance day, on an instructional period of that day's schedule; per person, calendar,
-- date and period the latest modified_date wins, then the highest attendance_id. The excuse code's status
-- and excuse win over the row's own.
counted_rows as (
    select distinct on (
        attendance.district_code, attendance.person_id, attendance.calendar_id, attendance.date,
        attendance.period_id
    )
        attendance.district_code,
        attendance.person_id,
        attendance.calendar_id,
        attendance.date,
        attendance.excuse_id,
        attendance.present_minutes,
        instructional_period.period_minutes,
        case when attendance_excuse.excuse_id is null then attendance.status else attendance_excuse.status end
            as status,
        nullif(
            case when attendance_excuse.excuse_id is null then attendance.excuse else attendance_excuse.excuse end,
            ''
        ) as excuse
    from attendance
    inner join day
        on attendance.district_code = day.district_code
        and attendance.calendar_id = day.calendar_id
        and attendance.date = day.date
    inner join instructional_period
        on attendance.district_code = instructional_period.district_code
        and attendance.period_id = instructional_period.period_id
        and day.period_schedule_id = instructional_period.period_schedule_id
    left join attendance_excuse
        on attendance.district_code = attendance_excuse.district_code
        and attendance.excuse_id = attendance_excuse.excuse_id
    order by
        attendance.district_code asc, attendance.person_id asc, attendance.calendar_id asc, attendance.date asc,
        attendance.period_id asc, attendance.modified_date desc nulls last, attendance.attendance_id desc
),

-- Missed minutes of one row, clamped to [0, period_minutes]; an exempt (X) row misses nothing.
missed_rows as (
    select
        district_code,
        person_id,
        calendar_id,
        date,
        excuse_id,
        status,
        excuse,
        case
            when excuse = 'X' then 0
            when status = 'A' then greatest(0, least(period_minutes, period_minutes - coalesce(present_minutes, 0)))
            when status in ('T', 'E') and present_minutes is not null
                then greatest(0, least(period_minutes, period_minutes - present_minutes))
            else 0
        end as missed_minutes
    from counted_rows
),

excuse_days as (
    select
        district_code,
        person_id,
        calendar_id,
        date,
        excuse_id,
        sum(missed_minutes) filter (where excuse = 'E') as excused_minutes,
        sum(missed_minutes) filter (where excuse = 'U') as unexcused_minutes,
        sum(missed_minutes) filter (where excuse is null) as unknown_minutes,
        count(*) filter (where status = 'T') as tardy_count,
        sum(missed_minutes) as missed_minutes
    from missed_rows
    group by district_code, person_id, calendar_id, date, excuse_id
),

-- Per student-day with counted rows: missed minutes by excuse before the cap, tardies, and the excuse code
-- with the most missed minutes (ties: the smallest excuse_id), found as the max of [minutes, -excuse_id].
attendance_days as (
    select
        district_code,
        person_id,
        calendar_id,
        date,
        coalesce(sum(excused_minutes), 0)::integer as excused_minutes,
        coalesce(sum(unexcused_minutes), 0)::integer as unexcused_minutes,
        coalesce(sum(unknown_minutes), 0)::integer as unknown_minutes,
        sum(tardy_count)::integer as tardy_count,
        (-(max(array[missed_minutes, -excuse_id]) filter (
            where excuse_id is not null and missed_minutes > 0
        ))[2])::integer as excuse_id
    from excuse_days
    group by district_code, person_id, calendar_id, date
),
{%- endif %}
{%- if output in ('attendance', 'attendance_days') %}

final as (
    select * from {{ output }}
)
{%- else %}

-- Student-days with counted attendance rows: the cap at scheduled_minutes, taken from unknown first, then
-- unexcused, then excused.
attended_days as (
    select
        attendance_days.district_code,
        attendance_days.person_id,
        attendance_days.calendar_id,
        attendance_days.date,
        school_days.scheduled_minutes::integer as scheduled_minutes,
        attendance_days.excused_minutes,
        attendance_days.unexcused_minutes,
        attendance_days.unknown_minutes,
        greatest(
            0,
            attendance_days.excused_minutes + attendance_days.unexcused_minutes + attendance_days.unknown_minutes
            - school_days.scheduled_minutes
        )::integer as excess_minutes,
        attendance_days.tardy_count,
        attendance_days.excuse_id,
        coalesce(school_days.whole_day_absence_minutes, ceil(0.5 * school_days.scheduled_minutes)::integer)
            as whole_day_minutes,
        coalesce(school_days.half_day_absence_minutes, ceil(0.25 * school_days.scheduled_minutes)::integer)
            as half_day_minutes
    from attendance_days
    inner join school_days
        on attendance_days.district_code = school_days.district_code
        and attendance_days.calendar_id = school_days.calendar_id
        and attendance_days.date = school_days.date
    where {{ att_day_aggregation_enrolled('attendance_days') }}
),

capped_days as (
    select
        *,
        unknown_minutes - least(unknown_minutes, excess_minutes) as unknown_absent_minutes,
        unexcused_minutes - least(unexcused_minutes, greatest(0, excess_minutes - unknown_minutes))
            as unexcused_absent_minutes,
        excused_minutes - greatest(0, excess_minutes - unknown_minutes - unexcused_minutes) as excused_absent_minutes
    from attended_days
),

totalled_days as (
    select
        *,
        excused_absent_minutes + unexcused_absent_minutes + unknown_absent_minutes as absent_minutes,
        unexcused_absent_minutes + unknown_absent_minutes as unexcused_or_unknown_minutes
    from capped_days
),

attended_rows as (
    select
        district_code,
        person_id,
        calendar_id,
        date,
        scheduled_minutes,
        scheduled_minutes - absent_minutes as present_minutes,
        absent_minutes,
        excused_absent_minutes,
        unexcused_absent_minutes,
        unknown_absent_minutes,
        tardy_count,
        excuse_id,
        case
            when absent_minutes > 0 and absent_minutes >= whole_day_minutes then 1.0::numeric(2, 1)
            when absent_minutes > 0 and absent_minutes >= half_day_minutes then 0.5::numeric(2, 1)
            else 0.0::numeric(2, 1)
        end as absent_days,
        case
            when absent_minutes > 0 and absent_minutes >= whole_day_minutes then 0.0::numeric(2, 1)
            when absent_minutes > 0 and absent_minutes >= half_day_minutes then 0.5::numeric(2, 1)
            else 1.0::numeric(2, 1)
        end as present_days,
        case
            when unexcused_or_unknown_minutes > 0 and unexcused_or_unknown_minutes >= whole_day_minutes
                then 1.0::numeric(2, 1)
            when unexcused_or_unknown_minutes > 0 and unexcused_or_unknown_minutes >= half_day_minutes
                then 0.5::numeric(2, 1)
            else 0.0::numeric(2, 1)
        end as unexcused_absent_days
    from totalled_days
),

-- The student-days to produce: every enrolled school day, or (incremental) those of the scope.
student_days as (
    {%- if scope %}
    select scope.district_code, scope.person_id, scope.calendar_id, scope.date, school_days.scheduled_minutes
    from scope
    join school_days
        on school_days.district_code = scope.district_code
        and school_days.calendar_id = scope.calendar_id
        and school_days.date = scope.date
    where {{ att_day_aggregation_enrolled('scope') }}
    {%- else %}
    select
        enrollment_spans.district_code,
        enrollment_spans.person_id,
        enrollment_spans.calendar_id,
        school_days.date,
        school_days.scheduled_minutes
    from enrollment_spans
    inner join school_days
        on enrollment_spans.district_code = school_days.district_code
        and enrollment_spans.calendar_id = school_days.calendar_id
        and school_days.date between enrollment_spans.start_date and enrollment_spans.end_date
    {%- endif %}
),

-- Every other student-day: present all day. (`not in` runs as one hashed lookup; the keys are never null.)
unattended_rows as (
    select
        district_code,
        person_id,
        calendar_id,
        date,
        scheduled_minutes::integer as scheduled_minutes,
        scheduled_minutes::integer as present_minutes,
        0 as absent_minutes,
        0 as excused_absent_minutes,
        0 as unexcused_absent_minutes,
        0 as unknown_absent_minutes,
        0 as tardy_count,
        null::integer as excuse_id,
        0.0::numeric(2, 1) as absent_days,
        1.0::numeric(2, 1) as present_days,
        0.0::numeric(2, 1) as unexcused_absent_days
    from student_days
    where (district_code, person_id, calendar_id, date)
        not in (
            select
                attendance_days.district_code,
                attendance_days.person_id,
                attendance_days.calendar_id,
                attendance_days.date
            from attendance_days
        )
),

final as (
    select * from attended_rows
    union all
    select * from unattended_rows
)
{%- endif %}

select * from final
