-- Reference for state.att_day_aggregation (docs/domain.md, "Aggregated attendance"): one hand-written
-- statement computing the full result for every district straight from the state tables; the yardstick
-- of the benchmark. It returns exactly the rows of the dbt model built with the same as-of date
-- (tests/dbt/test_att_day_aggregation.py checks this).
--
-- Parameter: %(as_of_date)s, a date (psycopg style). Time it as
--     set enable_nestloop = off; set enable_mergejoin = off;
--     create table <scratch> as <this statement>;
-- the same planner settings the model's heavy statements run with: the planner underestimates the
-- enrollment-date range join by orders of magnitude and otherwise picks nested loops or merge joins that
-- run for minutes (docs/architecture.md, "Performance notes").
with
school_days as (
    select
        day.district_code, day.calendar_id, day.date,
        sum(period.period_minutes) as scheduled_minutes,
        min(calendar.whole_day_absence_minutes) as whole_day_absence_minutes,
        min(calendar.half_day_absence_minutes) as half_day_absence_minutes
    from state.day as day
    join state.period as period
        on period.district_code = day.district_code and period.period_schedule_id = day.period_schedule_id
    left join state.calendar as calendar
        on calendar.district_code = day.district_code and calendar.calendar_id = day.calendar_id
    where day.instruction and day.attendance and day.date <= %(as_of_date)s and not period.non_instructional
    group by day.district_code, day.calendar_id, day.date
    having sum(period.period_minutes) > 0
),
enrollment_spans as (
    select
        district_code, person_id, calendar_id,
        greatest(start_date, max(coalesce(end_date, 'infinity')) over earlier + 1) as start_date,
        coalesce(end_date, 'infinity') as end_date
    from state.enrollment
    where service_type in ('P', 'S') and not no_show
    window earlier as (
        partition by district_code, person_id, calendar_id order by start_date, end_date nulls last
        rows between unbounded preceding and 1 preceding)
),
counted_rows as (
    select distinct on (attendance.district_code, attendance.person_id, attendance.calendar_id, attendance.date, attendance.period_id)
        attendance.district_code, attendance.person_id, attendance.calendar_id, attendance.date, attendance.excuse_id,
        attendance.present_minutes, period.period_minutes,
        case when excuse.excuse_id is not null then excuse.status else attendance.status end as status,
        nullif(case when excuse.excuse_id is not null then excuse.excuse else attendance.excuse end, '') as excuse
    from state.attendance as attendance
    join state.day as day
        on day.district_code = attendance.district_code and day.calendar_id = attendance.calendar_id and day.date = attendance.date
    join state.period as period
        on period.district_code = attendance.district_code and period.period_id = attendance.period_id
        and period.period_schedule_id = day.period_schedule_id
    left join state.attendance_excuse as excuse
        on excuse.district_code = attendance.district_code and excuse.excuse_id = attendance.excuse_id
    where day.instruction and day.attendance and day.date <= %(as_of_date)s and not period.non_instructional
    order by attendance.district_code, attendance.person_id, attendance.calendar_id, attendance.date,
        attendance.period_id, attendance.modified_date desc nulls last, attendance.attendance_id desc
),
missed_rows as (
    select district_code, person_id, calendar_id, date, excuse_id, status, excuse,
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
    select district_code, person_id, calendar_id, date, excuse_id,
        sum(missed_minutes) filter (where excuse = 'E') as excused_minutes,
        sum(missed_minutes) filter (where excuse = 'U') as unexcused_minutes,
        sum(missed_minutes) filter (where excuse is null) as unknown_minutes,
        count(*) filter (where status = 'T') as tardy_count,
        sum(missed_minutes) as missed_minutes
    from missed_rows
    group by district_code, person_id, calendar_id, date, excuse_id
),
attendance_days as (
    select district_code, person_id, calendar_id, date,
        coalesce(sum(excused_minutes), 0)::integer as excused_minutes,
        coalesce(sum(unexcused_minutes), 0)::integer as unexcused_minutes,
        coalesce(sum(unknown_minutes), 0)::integer as unknown_minutes,
        sum(tardy_count)::integer as tardy_count,
        (-(max(array[missed_minutes, -excuse_id]) filter (where excuse_id is not null and missed_minutes > 0))[2])::integer as excuse_id
    from excuse_days
    group by district_code, person_id, calendar_id, date
),
attended_days as (
    select a.*, d.scheduled_minutes,
        coalesce(d.whole_day_absence_minutes, ceil(0.5 * d.scheduled_minutes)::integer) as whole_day_minutes,
        coalesce(d.half_day_absence_minutes, ceil(0.25 * d.scheduled_minutes)::integer) as half_day_minutes,
        greatest(0, a.excused_minutes + a.unexcused_minutes + a.unknown_minutes - d.scheduled_minutes) as excess_minutes
    from attendance_days as a
    join school_days as d
        on d.district_code = a.district_code and d.calendar_id = a.calendar_id and d.date = a.date
    where exists (
        select 1 from enrollment_spans as spans
        where spans.district_code = a.district_code and spans.person_id = a.person_id
            and spans.calendar_id = a.calendar_id and a.date between spans.start_date and spans.end_date)
),
split as (
    select *,
        unknown_minutes - least(unknown_minutes, excess_minutes) as unknown_absent_minutes,
        unexcused_minutes - least(unexcused_minutes, greatest(0, excess_minutes - unknown_minutes)) as unexcused_absent_minutes,
        excused_minutes - greatest(0, excess_minutes - unknown_minutes - unexcused_minutes) as excused_absent_minutes
    from attended_days
),
minutes as (
    select *,
        excused_absent_minutes + unexcused_absent_minutes + unknown_absent_minutes as absent_minutes,
        unexcused_absent_minutes + unknown_absent_minutes as unexcused_or_unknown_minutes
    from split
),
attended_rows as (
    select
        district_code, person_id, calendar_id, date, scheduled_minutes::integer as scheduled_minutes,
        (scheduled_minutes - absent_minutes)::integer as present_minutes,
        absent_minutes, excused_absent_minutes, unexcused_absent_minutes, unknown_absent_minutes, tardy_count, excuse_id,
        case when absent_minutes > 0 and absent_minutes >= whole_day_minutes then 1.0::numeric(2, 1)
             when absent_minutes > 0 and absent_minutes >= half_day_minutes then 0.5::numeric(2, 1)
             else 0.0::numeric(2, 1) end as absent_days,
        case when absent_minutes > 0 and absent_minutes >= whole_day_minutes then 0.0::numeric(2, 1)
             when absent_minutes > 0 and absent_minutes >= half_day_minutes then 0.5::numeric(2, 1)
             else 1.0::numeric(2, 1) end as present_days,
        case when unexcused_or_unknown_minutes > 0 and unexcused_or_unknown_minutes >= whole_day_minutes then 1.0::numeric(2, 1)
             when unexcused_or_unknown_minutes > 0 and unexcused_or_unknown_minutes >= half_day_minutes then 0.5::numeric(2, 1)
             else 0.0::numeric(2, 1) end as unexcused_absent_days
    from minutes
),
unattended_rows as (
    select
        spans.district_code, spans.person_id, spans.calendar_id, d.date, d.scheduled_minutes::integer as scheduled_minutes,
        d.scheduled_minutes::integer as present_minutes,
        0 as absent_minutes, 0 as excused_absent_minutes, 0 as unexcused_absent_minutes, 0 as unknown_absent_minutes,
        0 as tardy_count, null::integer as excuse_id,
        0.0::numeric(2, 1) as absent_days, 1.0::numeric(2, 1) as present_days, 0.0::numeric(2, 1) as unexcused_absent_days
    from enrollment_spans as spans
    join school_days as d
        on d.district_code = spans.district_code and d.calendar_id = spans.calendar_id
        and d.date between spans.start_date and spans.end_date
    where (spans.district_code, spans.person_id, spans.calendar_id, d.date) not in (
        select district_code, person_id, calendar_id, date from attendance_days)
)
select * from attended_rows
union all
select * from unattended_rows
