{#-
    create_model_build_table(): the on-run-start hook that creates state.model_build, the per model and
    district record of the landing horizon a build read (see district_replace.sql).
-#}
{% macro create_model_build_table() -%}
    {#- A district-level writer may not create tables; a state-level build made this one
        (orchestration/warehouse/rights.py). -#}
    {%- if target.get('role') == 'attendance_district_write' -%}
        {{- return('select 1') -}}
    {%- endif -%}
    {#- on-run-* hooks run after a rollback that undoes the profile's `set role` (dbt-labs/dbt-adapters#1889):
        take the role again so the table belongs to the write role, and commit explicitly. -#}
    {{ dbt_role_statement() }}
    create table if not exists state.model_build (
        model_name text not null,
        district_code text not null,
        landing_batch_id bigint,
        built_at timestamptz not null,
        as_of_date date,
        primary key (model_name, district_code)
    );
    comment on table state.model_build is
        'Per model and district: the landing horizon (max landing.load_batch.batch_id) the last build read, '
        'when it was built and, for att_day_aggregation, its as-of date. Written by macros/district_replace.sql.';
    grant select on state.model_build to attendance_read;
    commit
{%- endmacro %}
