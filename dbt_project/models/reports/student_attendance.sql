-- Per student, school and school year (docs/domain.md, "State reports"): days enrolled, present and absent,
-- the attendance rate and whether the student is chronically absent. Calendars with exclude = true are
-- left out. Only aggregation days up to the report's as-of date count (see report_as_of_dates).
-- Day counts are multiples of 0.5 (one decimal); rates are rounded to 4 decimals.

{#- Incremental runs read only the districts whose rows can have changed (macros/report_replace.sql). #}
{%- set rebuilt = report_district_filter() %}

with aggregation as (
    select * from {{ ref('att_day_aggregation') }}
    where {{ rebuilt }}
),

calendar as (
    select * from {{ ref('calendar') }}
    where {{ rebuilt }}
),

person as (
    select * from {{ ref('person') }}
    where {{ rebuilt }}
),

as_of as (
    {{ report_as_of_dates() }}
),

reported_days as (
    select
        aggregation.district_code,
        calendar.school_id,
        calendar.end_year,
        aggregation.person_id,
        aggregation.present_days,
        aggregation.absent_days,
        aggregation.unexcused_absent_days
    from aggregation
    inner join calendar
        on aggregation.district_code = calendar.district_code
        and aggregation.calendar_id = calendar.calendar_id
    inner join as_of
        on aggregation.district_code = as_of.district_code
    where not calendar.exclude
        and aggregation.date <= as_of.as_of_date
),

student_year as (
    select
        district_code,
        school_id,
        end_year,
        person_id,
        count(*) as enrolled_days,
        round(sum(present_days), 1) as present_days,
        round(sum(absent_days), 1) as absent_days,
        round(sum(unexcused_absent_days), 1) as unexcused_absent_days
    from reported_days
    group by district_code, school_id, end_year, person_id
),

final as (
    select
        student_year.district_code,
        student_year.school_id,
        student_year.end_year,
        student_year.person_id,
        person.state_id,
        student_year.enrolled_days,
        student_year.present_days,
        student_year.absent_days,
        student_year.unexcused_absent_days,
        round(student_year.present_days / student_year.enrolled_days, 4) as attendance_rate,
        {{ chronically_absent('student_year.enrolled_days', 'student_year.absent_days') }} as chronically_absent
    from student_year
    left join person
        on student_year.district_code = person.district_code
        and student_year.person_id = person.person_id
)

select * from final
