{{ config(indexes=[
    {'columns': ['district_code', 'end_year'], 'unique': true},
]) }}
-- School years, keyed by the calendar year in which they end. Parents (docs/domain.md): district.
-- depends_on: {{ ref('district') }}

with school_year as (
    select * from {{ ref('stg_landing__school_year') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
    select
        district_code,
        end_year,
        label,
        active,
        landing_batch_id,
        landing_changed_at
    from school_year
)

select * from final
