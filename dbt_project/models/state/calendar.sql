{{ config(indexes=[
    {'columns': ['district_code', 'calendar_id'], 'unique': true},
]) }}
-- A school's calendar for one school year (a school may run several, e.g. for programs). Parents
-- (docs/domain.md): school, school_year.
-- depends_on: {{ ref('school') }}
-- depends_on: {{ ref('school_year') }}

with calendar as (
    select * from {{ ref('stg_landing__calendar') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
    select
        district_code,
        calendar_id,
        school_id,
        end_year,
        name,
        start_date,
        end_date,
        whole_day_absence_minutes,
        half_day_absence_minutes,
        exclude,
        modified_date,
        landing_batch_id,
        landing_changed_at
    from calendar
)

select * from final
