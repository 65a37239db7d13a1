{#-
    run_origin(): the origin of this dbt invocation as a SQL string literal: $ATTENDANCE_RUN_ORIGIN, which
    the project's runner and the Dagster dbt resource set (a Dagster run id or a CLI command,
    orchestration/warehouse/run_origin.py), else `dbt invocation <invocation_id>` for dbt started by hand.
-#}
{% macro run_origin() -%}
    {%- set origin = env_var('ATTENDANCE_RUN_ORIGIN', '') | trim -%}
    '{{ (origin or ('dbt invocation ' ~ invocation_id)) | replace("'", "''") }}'
{%- endmacro %}
