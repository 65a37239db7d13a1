{#-
    record_report_build(): the post-hook of every report model (dbt_project.yml): its build time, as-of
    date, origin (run_origin.sql) and a new change sequence number in state.report_build
    (model_build_table.sql), in the model's transaction, so a failed build leaves the record as it was.
-#}
{% macro record_report_build() -%}
    {%- if execute -%}
    insert into state.report_build as build (model_name, built_at, as_of_date, origin, build_seq)
    values ('{{ this.identifier }}', clock_timestamp(), {{ as_of_date() }}, {{ run_origin() }},
            nextval('state.model_build_seq'))
    on conflict (model_name) do update
    set built_at = excluded.built_at,
        as_of_date = excluded.as_of_date,
        origin = excluded.origin,
        build_seq = excluded.build_seq
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}
