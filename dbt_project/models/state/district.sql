{{ config(indexes=[
    {'columns': ['district_code'], 'unique': true},
]) }}
-- The districts of the State Edition (every district built; those the registry no longer lists keep their row
-- until retired, and the reports leave them out); every other state table's rows belong to one.

with district as (
    select * from {{ ref('stg_landing__district') }}
    where {{ district_filter() }}
),

final as (
    select
        district_code,
        name,
        source,
        registered_at
    from district
)

select * from final
