-- Per school and school year (docs/domain.md, "State reports"): instructional days up to the as-of date,
-- average daily membership (ADM), average daily attendance (ADA) and the chronic absence rate.
-- Calendars with exclude = true are left out of both the days and the students. Rates: 4 decimals.

{#- Incremental runs read only the districts whose rows can have changed (macros/report_replace.sql). #}
{%- set rebuilt = report_district_filter() %}

with student_attendance as (
    select * from {{ ref('student_attendance') }}
    where {{ rebuilt }}
),

calendar as (
    select * from {{ ref('calendar') }}
    where {{ rebuilt }}
),

day as (
    select * from {{ ref('day') }}
    where {{ rebuilt }}
),

school as (
    select * from {{ ref('school') }}
    where {{ rebuilt }}
),

as_of as (
    {{ report_as_of_dates() }}
),

-- Distinct attendance days (instruction and attendance) up to the as-of date in any of the school's
-- reported calendars for the year.
school_days as (
    select
        calendar.district_code,
        calendar.school_id,
        calendar.end_year,
        count(distinct day.date) as instructional_days
    from day
    inner join calendar
        on day.district_code = calendar.district_code
        and day.calendar_id = calendar.calendar_id
    inner join as_of
        on day.district_code = as_of.district_code
    where not calendar.exclude
        and day.instruction
        and day.attendance
        and day.date <= as_of.as_of_date
    group by calendar.district_code, calendar.school_id, calendar.end_year
),

school_students as (
    select
        district_code,
        school_id,
        end_year,
        count(*) as students,
        sum(enrolled_days) as enrolled_days,
        round(sum(present_days), 1) as present_days,
        count(*) filter (where enrolled_days >= 10) as students_enrolled_10_days,
        count(*) filter (where chronically_absent) as chronically_absent_students
    from student_attendance
    group by district_code, school_id, end_year
),

school_years as (
    select
        district_code,
        school_id,
        end_year
    from school_days
    union
    select
        district_code,
        school_id,
        end_year
    from school_students
),

final as (
    select
        school_years.district_code,
        school_years.school_id,
        school.name as school_name,
        school.state_school_code,
        school_years.end_year,
        as_of.as_of_date,
        coalesce(school_days.instructional_days, 0) as instructional_days,
        coalesce(school_students.students, 0) as students,
        coalesce(school_students.enrolled_days, 0) as enrolled_days,
        coalesce(school_students.present_days, 0.0) as present_days,
        round(coalesce(school_students.enrolled_days, 0) / nullif(school_days.instructional_days, 0)::numeric, 4)
            as adm,
        round(coalesce(school_students.present_days, 0.0) / nullif(school_days.instructional_days, 0)::numeric, 4)
            as ada,
        coalesce(school_students.students_enrolled_10_days, 0) as students_enrolled_10_days,
        coalesce(school_students.chronically_absent_students, 0) as chronically_absent_students,
        round(
            school_students.chronically_absent_students::numeric
            / nullif(school_students.students_enrolled_10_days, 0), 4
        ) as chronic_absence_rate
    from school_years
    left join school_days
        on school_years.district_code = school_days.district_code
        and school_years.school_id = school_days.school_id
        and school_years.end_year = school_days.end_year
    left join school_students
        on school_years.district_code = school_students.district_code
        and school_years.school_id = school_students.school_id
        and school_years.end_year = school_students.end_year
    left join school
        on school_years.district_code = school.district_code
        and school_years.school_id = school.school_id
    left join as_of
        on school_years.district_code = as_of.district_code
)

select * from final
