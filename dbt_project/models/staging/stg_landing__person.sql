-- Students (persons) of the district. Live landing rows only, typed, system columns renamed.
-- An empty state_id cannot be matched across districts: normalised to null.
with source as (
    select * from {{ source('landing', 'person') }}
),

renamed as (
    select
        district_code,
        cast(person_id as integer) as person_id,
        nullif(trim(state_id), '') as state_id,
        student_number,
        last_name,
        first_name,
        cast(birth_date as date) as birth_date,
        gender,
        cast(modified_date as timestamp) as modified_date,
        _batch_id as landing_batch_id,
        _changed_at as landing_changed_at
    from source
    where not _deleted
)

select * from renamed
