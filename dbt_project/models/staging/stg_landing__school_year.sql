-- School years, keyed by the calendar year in which they end. Live landing rows only, typed, system
-- columns renamed.
with source as (
    select * from {{ source('landing', 'school_year') }}
),

renamed as (
    select
        district_code,
        cast(end_year as integer) as end_year,
        label,
        cast(active as boolean) as active,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
