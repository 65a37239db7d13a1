{#-
    Shared rules of the state reports (docs/domain.md, "State reports").
-#}

{#-
    report_as_of_dates(): one row per district (district_code, as_of_date): the as-of date the reports
    use for it. That is the run's as-of date (as_of_date()), but never later than the as-of date of the
    district's last att_day_aggregation build (state.model_build): days the aggregation has not reached
    yet must not count as instructional days, or a report run on a later day than the aggregation
    would understate ADA and ADM. Only current districts have a row (removed from the registry: not
    reported), and every report joins these rows.
-#}
{% macro report_as_of_dates() -%}
    select
        district.district_code,
        least({{ as_of_date() }}, coalesce(aggregation_build.as_of_date, {{ as_of_date() }})) as as_of_date
    from {{ ref('district') }} as district
    left join {{ source('state', 'model_build') }} as aggregation_build
        on aggregation_build.district_code = district.district_code
        and aggregation_build.model_name = 'att_day_aggregation'
    where {{ current_district_filter('district.district_code') }}
{%- endmacro %}


{#-
    chronically_absent(enrolled_days, absent_days): enrolled at least 10 days and absent at least 10% of them.
-#}
{% macro chronically_absent(enrolled_days, absent_days) -%}
    ({{ enrolled_days }} >= 10 and {{ absent_days }} >= 0.10 * {{ enrolled_days }})
{%- endmacro %}
