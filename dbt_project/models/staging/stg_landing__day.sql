-- A calendar day, whether it is an instructional and attendance day, and its period schedule. Live
-- landing rows only, typed, system columns renamed.
with source as (
    select * from {{ source('landing', 'day') }}
),

renamed as (
    select
        district_code,
        cast(day_id as integer) as day_id,
        cast(calendar_id as integer) as calendar_id,
        cast(date as date) as date,
        cast(period_schedule_id as integer) as period_schedule_id,
        cast(instruction as boolean) as instruction,
        cast(attendance as boolean) as attendance,
        comments,
        cast(modified_date as timestamp) as modified_date,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
