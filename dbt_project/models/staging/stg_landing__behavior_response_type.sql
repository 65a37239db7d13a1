-- Behavior response types of a calendar. Live landing rows only, typed, system columns renamed.
with source as (
    select * from {{ source('landing', 'behavior_response_type') }}
),

renamed as (
    select
        district_code,
        cast(response_type_id as integer) as response_type_id,
        cast(calendar_id as integer) as calendar_id,
        code,
        name,
        state_response_code,
        cast(active as boolean) as active,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
