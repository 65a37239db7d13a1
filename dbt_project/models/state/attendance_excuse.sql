{{ config(indexes=[
    {'columns': ['district_code', 'excuse_id'], 'unique': true},
]) }}
-- The district's attendance codes; their status and excuse win over the attendance row's own. Parents
-- (docs/domain.md): calendar.
-- depends_on: {{ ref('calendar') }}

with attendance_excuse as (
    select * from {{ ref('stg_landing__attendance_excuse') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
    select
        district_code,
        excuse_id,
        calendar_id,
        code,
        description,
        status,
        excuse,
        state_code,
        active,
        modified_date,
        landing_batch_id,
        landing_changed_at
    from attendance_excuse
)

select * from final
