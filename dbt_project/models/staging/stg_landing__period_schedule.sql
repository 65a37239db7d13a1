-- A bell schedule of a calendar; each day names the schedule it follows. Live landing rows only,
-- typed, system columns renamed.
with source as (
    select * from {{ source('landing', 'period_schedule') }}
),

renamed as (
    select
        district_code,
        cast(period_schedule_id as integer) as period_schedule_id,
        cast(calendar_id as integer) as calendar_id,
        name,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
