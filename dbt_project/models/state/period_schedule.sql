{{ config(indexes=[
    {'columns': ['district_code', 'period_schedule_id'], 'unique': true},
]) }}
-- A bell schedule of a calendar; each day names the schedule it follows. Parents (docs/domain.md):
-- calendar.
-- depends_on: {{ ref('calendar') }}

with period_schedule as (
    select * from {{ ref('stg_landing__period_schedule') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
    select
        district_code,
        period_schedule_id,
        calendar_id,
        name,
        landing_batch_id,
        landing_changed_at
    from period_schedule
)

select * from final
