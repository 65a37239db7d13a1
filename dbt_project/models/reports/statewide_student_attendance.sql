-- Per student (state_id) and school year across every district and school (docs/domain.md, "State reports"):
-- the student figures summed, so a student who moved between districts is judged on the whole year.
-- Students without a state_id cannot be matched across districts and are left out.

-- Recomputed whole when any district's student rows were rebuilt, else not read at all; only changed rows
-- are written (macros/report_replace.sql).
-- depends_on: {{ ref('district') }}
{{ config(report_strategy='statewide') }}
{%- set rebuilt = report_district_filter() %}

with student_attendance as (
    select * from {{ ref('student_attendance') }}
    where {{ rebuilt }}
),

statewide as (
    select
        state_id,
        end_year,
        count(distinct district_code) as districts,
        count(*) as school_enrollments,
        sum(enrolled_days) as enrolled_days,
        round(sum(present_days), 1) as present_days,
        round(sum(absent_days), 1) as absent_days,
        round(sum(unexcused_absent_days), 1) as unexcused_absent_days
    from student_attendance
    where state_id is not null
    group by state_id, end_year
),

final as (
    select
        state_id,
        end_year,
        districts,
        school_enrollments,
        enrolled_days,
        present_days,
        absent_days,
        unexcused_absent_days,
        round(present_days / enrolled_days, 4) as attendance_rate,
        {{ chronically_absent('enrolled_days', 'absent_days') }} as chronically_absent
    from statewide
)

select * from final
