{{ config(indexes=[
    {'columns': ['district_code', 'period_id'], 'unique': true},
]) }}
-- A period of a period schedule, with its length in minutes. Parents (docs/domain.md): period_schedule.
-- depends_on: {{ ref('period_schedule') }}

with period as (
    select * from {{ ref('stg_landing__period') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
    select
        district_code,
        period_id,
        period_schedule_id,
        name,
        seq,
        start_time,
        end_time,
        period_minutes,
        non_instructional,
        landing_batch_id,
        landing_changed_at
    from period
)

select * from final
