{{ config(indexes=[
    {'columns': ['district_code', 'person_id'], 'unique': true},
]) }}
-- Students (persons) of the district. Parents (docs/domain.md): district.
-- depends_on: {{ ref('district') }}

with person as (
    select * from {{ ref('stg_landing__person') }}
    where {{ district_filter() }}
        {{ state_changes_filter() }}
),

final as (
    select
        district_code,
        person_id,
        state_id,
        student_number,
        last_name,
        first_name,
        birth_date,
        gender,
        modified_date,
        landing_batch_id,
        landing_changed_at
    from person
)

select * from final
