-- Schools of the district. Live landing rows only, typed, system columns renamed.
with source as (
    select * from {{ source('landing', 'school') }}
),

renamed as (
    select
        district_code,
        cast(school_id as integer) as school_id,
        number,
        name,
        state_school_code,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
