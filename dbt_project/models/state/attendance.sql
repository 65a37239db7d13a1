{{ config(indexes=[
    {'columns': ['district_code', 'attendance_id'], 'unique': true},
]) }}
-- Attendance events: one row per student, date and period where the student was absent, tardy or
-- released early. Parents (docs/domain.md): person, calendar, period, attendance_excuse.
-- depends_on: {{ ref('person') }}
-- depends_on: {{ ref('calendar') }}
-- depends_on: {{ ref('period') }}
-- depends_on: {{ ref('attendance_excuse') }}

with attendance as (
    select * from {{ ref('stg_landing__attendance') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
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
        comments,
        modified_date,
        landing_batch_id,
        landing_changed_at
    from attendance
)

select * from final
