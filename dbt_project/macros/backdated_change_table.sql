{#-
    create_backdated_change_table(): the on-run-start hook that creates state.backdated_change, the
    append-only history of backdated changes per build of att_day_aggregation and district
    (att_day_aggregation/att_day_aggregation_backdated.sql), and puts it under the district-level row
    security of the state tables (landing.apply_row_security): district-level readers see their
    districts' rows, district-level writers may add rows for theirs (their aggregation builds).
-#}
{% macro create_backdated_change_table() -%}
    {#- A district-level writer may not create tables; a state-level build made this one. -#}
    {%- if not execute or target.get('role') == 'attendance_district_write' -%}
        {{- return('select 1') -}}
    {%- endif -%}
    {#- Same role and explicit commit as create_model_build_table, for the same reason. -#}
    {{ dbt_role_statement() }}
    {#- Keyed by dbt's invocation id (a run builds the aggregation once), not by a sequence: the history must
        stay consistent however a build ends (tests/faults). -#}
    create table if not exists state.backdated_change (
        invocation_id text not null,
        origin text not null,
        built_at timestamptz not null,
        district_code text not null,
        build_mode text not null,
        previous_as_of_date date,
        as_of_date date not null,
        backdated_inserted integer,
        backdated_changed integer,
        backdated_deleted integer,
        backdated_rows integer,
        student_days_changed integer,
        primary key (invocation_id, district_code)
    );
    create index if not exists backdated_change_district on state.backdated_change (district_code, built_at);
    comment on table state.backdated_change is
        'Per build of att_day_aggregation and district: the changed attendance rows dated before the previous '
        'as-of date, and the student-days they changed. Append-only. Written by '
        'macros/att_day_aggregation/att_day_aggregation_backdated.sql.';
    grant select on state.backdated_change to attendance_read;
    do $row_security$
    begin
        if to_regprocedure('landing.apply_row_security(regclass)') is not null then
            perform landing.apply_row_security('state.backdated_change'::regclass);
            if not has_table_privilege('attendance_district_read', 'state.backdated_change', 'select') then
                grant select on state.backdated_change to attendance_district_read;
            end if;
            if not has_table_privilege('attendance_district_write', 'state.backdated_change', 'insert') then
                grant select, insert on state.backdated_change to attendance_district_write;
            end if;
        end if;
    end
    $row_security$;
    commit
{%- endmacro %}
