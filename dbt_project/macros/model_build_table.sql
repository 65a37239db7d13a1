{#-
    create_model_build_table(): the on-run-start hook that creates state.model_build, the per model and
    district record of the landing horizon a build read (see district_replace.sql), and state.report_build,
    the per report and district record of its last rebuild (report_replace.sql).
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
    -- When the district's rows of the model last changed (a build that found nothing to do keeps it): the
    -- reports rebuild a district only when a model they read changed it since (macros/report_replace.sql).
    alter table state.model_build add column if not exists changed_at timestamptz;
    comment on table state.model_build is
        'Per model and district: the landing horizon (max landing.load_batch.batch_id) the last build read, '
        'when it was built and, for att_day_aggregation, its as-of date. Written by macros/district_replace.sql.';
    grant select on state.model_build to attendance_read;
    -- Per report and district: the last rebuild of the district's report rows (macros/report_replace.sql).
    create table if not exists state.report_build (
        report_name text not null,
        district_code text not null,
        built_at timestamptz not null,
        as_of_date date,
        changed_at timestamptz not null,
        primary key (report_name, district_code)
    );
    comment on table state.report_build is
        'Per report and district: when its rows were last rebuilt and with which as-of date. '
        'Written by macros/report_replace.sql.';
    grant select on state.report_build to attendance_read;
    {{ model_build_origin_columns() }}
    commit
{%- endmacro %}


{#-
    model_build_origin_columns(): part of create_model_build_table. Who made each build (its origin:
    macros/run_origin.sql) and a change sequence (build_seq, set on every upsert) that the Dagster sensor
    reporting builds follows; the same for the reports' district rows in state.report_build. Columns
    are added only when missing, so that a routine build takes no exclusive lock on state.model_build.
-#}
{% macro model_build_origin_columns() -%}
    create sequence if not exists state.model_build_seq;
    do $origin_columns$
    begin
        if not exists (select 1 from pg_attribute where attrelid = 'state.model_build'::regclass
                       and attname = 'build_seq' and not attisdropped) then
            alter table state.model_build add column if not exists origin text,
                add column if not exists build_seq bigint;
        end if;
        if not exists (select 1 from pg_attribute where attrelid = 'state.report_build'::regclass
                       and attname = 'build_seq' and not attisdropped) then
            alter table state.report_build add column if not exists origin text,
                add column if not exists build_seq bigint;
        end if;
        if not has_sequence_privilege('attendance_district_write', 'state.model_build_seq', 'usage') then
            grant usage on sequence state.model_build_seq to attendance_district_write;
        end if;
    end
    $origin_columns$;
{%- endmacro %}
