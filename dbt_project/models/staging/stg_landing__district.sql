-- The district registry as last loaded into landing (districts.yml is the source of truth).
with source as (
    select * from {{ source('landing', 'district') }}
),

renamed as (
    select
        district_code,
        name,
        source,
        registered_at
    from source
)

select * from renamed
