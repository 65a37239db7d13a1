-- A student's enrollment in a calendar for a date range. Live landing rows only, typed, system columns
-- renamed.
with source as (
    select * from {{ source('landing', 'enrollment') }}
),

renamed as (
    select
        district_code,
        cast(enrollment_id as integer) as enrollment_id,
        cast(person_id as integer) as person_id,
        cast(calendar_id as integer) as calendar_id,
        grade,
        cast(start_date as date) as start_date,
        cast(end_date as date) as end_date,
        service_type,
        cast(no_show as boolean) as no_show,
        cast(modified_date as timestamp) as modified_date,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
