{{ config(indexes=[
    {'columns': ['district_code', 'school_id'], 'unique': true},
]) }}
-- Schools of the district. Parents (docs/domain.md): district.
-- depends_on: {{ ref('district') }}

with school as (
    select * from {{ ref('stg_landing__school') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
    select
        district_code,
        school_id,
        number,
        name,
        state_school_code,
        landing_batch_id,
        landing_changed_at
    from school
)

select * from final
