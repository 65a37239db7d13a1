{{ config(severity='warn') }}
{#-
    Attendance rows the aggregation ignores (docs/domain.md, "Aggregated attendance"): a row counts only when
    its period belongs to the period schedule of the calendar day it names and is instructional.
    Catches: rows on a date the calendar has no day for, rows whose period is not in that day's schedule
    (or the day has none), rows on non-instructional periods. They change no minutes, so this only warns.
    Resolve: ask the district to correct the rows (or the day's period schedule); the next sync picks it up.
-#}
with attendance as (
    select * from {{ ref('attendance') }}
),

day as (
    select * from {{ ref('day') }}
),

period as (
    select * from {{ ref('period') }}
),

checked as (
    select
        attendance.district_code,
        attendance.attendance_id,
        attendance.person_id,
        attendance.calendar_id,
        attendance.date,
        attendance.period_id,
        case
            when day.day_id is null then 'no calendar day on this date'
            when period.period_id is null then 'unknown period'
            when day.period_schedule_id is null then 'the day has no period schedule'
            when period.period_schedule_id <> day.period_schedule_id then 'period not in the day''s period schedule'
            when period.non_instructional then 'non-instructional period'
        end as reason
    from attendance
    left join day
        on attendance.district_code = day.district_code
        and attendance.calendar_id = day.calendar_id
        and attendance.date = day.date
    left join period
        on attendance.district_code = period.district_code
        and attendance.period_id = period.period_id
)

select * from checked
where reason is not null
