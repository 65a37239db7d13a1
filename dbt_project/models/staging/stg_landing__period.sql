-- A period of a period schedule, with its length in minutes. Live landing rows only, typed, system
-- columns renamed.
with source as (
    select * from {{ source('landing', 'period') }}
),

renamed as (
    select
        district_code,
        cast(period_id as integer) as period_id,
        cast(period_schedule_id as integer) as period_schedule_id,
        name,
        cast(seq as integer) as seq,
        cast(start_time as time) as start_time,
        cast(end_time as time) as end_time,
        cast(period_minutes as integer) as period_minutes,
        cast(non_instructional as boolean) as non_instructional,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
