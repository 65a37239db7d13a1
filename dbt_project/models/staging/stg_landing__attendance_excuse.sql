-- The district's attendance codes; their status and excuse win over the attendance row's own. Live
-- landing rows only, typed, system columns renamed.
-- An empty excuse means unknown (docs/domain.md, Codes): normalised to null.
with source as (
    select * from {{ source('landing', 'attendance_excuse') }}
),

renamed as (
    select
        district_code,
        cast(excuse_id as integer) as excuse_id,
        cast(calendar_id as integer) as calendar_id,
        code,
        description,
        status,
        nullif(trim(excuse), '') as excuse,
        state_code,
        cast(active as boolean) as active,
        cast(modified_date as timestamp) as modified_date,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
