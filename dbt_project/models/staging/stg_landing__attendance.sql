-- Attendance events: one row per student, date and period where the student was absent, tardy or
-- released early. Live landing rows only, typed, system columns renamed.
-- An empty excuse means unknown (docs/domain.md, Codes): normalised to null.
with source as (
    select * from {{ source('landing', 'attendance') }}
),

renamed as (
    select
        district_code,
        cast(attendance_id as integer) as attendance_id,
        cast(person_id as integer) as person_id,
        cast(calendar_id as integer) as calendar_id,
        cast(period_id as integer) as period_id,
        cast(date as date) as date,
        status,
        nullif(trim(excuse), '') as excuse,
        cast(excuse_id as integer) as excuse_id,
        cast(present_minutes as integer) as present_minutes,
        comments,
        cast(modified_date as timestamp) as modified_date,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
