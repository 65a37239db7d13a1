{{ config(indexes=[
    {'columns': ['district_code', 'enrollment_id'], 'unique': true},
]) }}
-- A student's enrollment in a calendar for a date range. Parents (docs/domain.md): person, calendar.
-- depends_on: {{ ref('person') }}
-- depends_on: {{ ref('calendar') }}

with enrollment as (
    select * from {{ ref('stg_landing__enrollment') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
    select
        district_code,
        enrollment_id,
        person_id,
        calendar_id,
        grade,
        start_date,
        end_date,
        service_type,
        no_show,
        modified_date,
        landing_batch_id,
        landing_changed_at
    from enrollment
)

select * from final
