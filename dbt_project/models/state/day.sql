{{ config(indexes=[
    {'columns': ['district_code', 'day_id'], 'unique': true},
    {'columns': ['district_code', 'calendar_id', 'date']},
]) }}
-- A calendar day, whether it is an instructional and attendance day, and its period schedule. Parents
-- (docs/domain.md): calendar, period_schedule.
-- depends_on: {{ ref('calendar') }}
-- depends_on: {{ ref('period_schedule') }}

with day as (
    select * from {{ ref('stg_landing__day') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
    select
        district_code,
        day_id,
        calendar_id,
        date,
        period_schedule_id,
        instruction,
        attendance,
        comments,
        modified_date,
        landing_batch_id,
        landing_changed_at
    from day
)

select * from final
