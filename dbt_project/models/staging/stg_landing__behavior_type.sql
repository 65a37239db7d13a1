-- Behavior event types of a calendar. Live landing rows only, typed, system columns renamed.
with source as (
    select * from {{ source('landing', 'behavior_type') }}
),

renamed as (
    select
        district_code,
        cast(type_id as integer) as type_id,
        cast(calendar_id as integer) as calendar_id,
        code,
        name,
        category,
        state_event_code,
        cast(active as boolean) as active,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
