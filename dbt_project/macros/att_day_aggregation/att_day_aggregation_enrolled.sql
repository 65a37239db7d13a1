{#-
    att_day_aggregation_enrolled(alias): the model's check that the student-day `alias` (a relation with
    district_code, person_id, calendar_id, date) lies in one of the student's enrollment spans (the model's
    enrollment_spans CTE). Written once for the two places that need it.
-#}
{% macro att_day_aggregation_enrolled(alias) -%}
    exists (
        select 1
        from enrollment_spans
        where enrollment_spans.district_code = {{ alias }}.district_code
            and enrollment_spans.person_id = {{ alias }}.person_id
            and enrollment_spans.calendar_id = {{ alias }}.calendar_id
            and {{ alias }}.date between enrollment_spans.start_date and enrollment_spans.end_date
    )
{%- endmacro %}
