-- A school's calendar for one school year (a school may run several, e.g. for programs). Live landing
-- rows only, typed, system columns renamed.
with source as (
    select * from {{ source('landing', 'calendar') }}
),

renamed as (
    select
        district_code,
        cast(calendar_id as integer) as calendar_id,
        cast(school_id as integer) as school_id,
        cast(end_year as integer) as end_year,
        name,
        cast(start_date as date) as start_date,
        cast(end_date as date) as end_date,
        cast(whole_day_absence_minutes as integer) as whole_day_absence_minutes,
        cast(half_day_absence_minutes as integer) as half_day_absence_minutes,
        cast(exclude as boolean) as exclude,
        cast(modified_date as timestamp) as modified_date,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
