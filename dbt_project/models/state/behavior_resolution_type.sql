{{ config(indexes=[
    {'columns': ['district_code', 'resolution_type_id'], 'unique': true},
]) }}
-- Behavior resolution types of a calendar. Parents (docs/domain.md): calendar.
-- depends_on: {{ ref('calendar') }}

with behavior_resolution_type as (
    select * from {{ ref('stg_landing__behavior_resolution_type') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
    select
        district_code,
        resolution_type_id,
        calendar_id,
        code,
        name,
        state_resolution_code,
        active,
        landing_batch_id,
        landing_changed_at
    from behavior_resolution_type
)

select * from final
