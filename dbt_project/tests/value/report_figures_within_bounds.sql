{#-
    Report figures within their bounds (value): attendance rates and the chronic absence rate lie in
    [0, 1], present and absent days add up to enrolled days, and no school has more enrolled days
    than students times instructional days.
    Catches: a broken aggregation (absent_days outside 0/0.5/1, several rows per student-day) or a
    report joining rows twice.
    Resolve: run the att_day_aggregation tests and compare with a full refresh of the aggregation.
-#}
with student_attendance as (
    select * from {{ ref('student_attendance') }}
),

school_attendance as (
    select * from {{ ref('school_attendance') }}
),

student_problems as (
    select
        'student_attendance' as report,
        district_code || ' school ' || school_id || ' year ' || end_year || ' person ' || person_id as row_key,
        case
            when attendance_rate not between 0 and 1 then 'attendance_rate outside [0, 1]'
            when present_days + absent_days <> enrolled_days then 'present_days + absent_days <> enrolled_days'
            when unexcused_absent_days > absent_days then 'unexcused_absent_days > absent_days'
        end as problem
    from student_attendance
),

school_problems as (
    select
        'school_attendance' as report,
        district_code || ' school ' || school_id || ' year ' || end_year as row_key,
        case
            when chronic_absence_rate not between 0 and 1 then 'chronic_absence_rate outside [0, 1]'
            when ada > adm then 'ada > adm'
            when enrolled_days > students * instructional_days then 'more enrolled days than students x days'
        end as problem
    from school_attendance
)

select * from student_problems
where problem is not null
union all
select * from school_problems
where problem is not null
