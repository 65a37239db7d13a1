{{ config(indexes=[
    {'columns': ['district_code', 'type_id'], 'unique': true},
]) }}
-- Behavior event types of a calendar. Parents (docs/domain.md): calendar.
-- depends_on: {{ ref('calendar') }}

with behavior_type as (
    select * from {{ ref('stg_landing__behavior_type') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
    select
        district_code,
        type_id,
        calendar_id,
        code,
        name,
        category,
        state_event_code,
        active,
        landing_batch_id,
        landing_changed_at
    from behavior_type
)

select * from final
