{#-
    row_security(): post-hook of every state and reports model (dbt_project.yml), applying district-level
    row security to the table just built (landing.apply_row_security, orchestration/warehouse/setup.py):
    state-level readers see every row, district-level readers only their districts' rows (or, in the
    statewide report, the students enrolled in their districts). A table materialization creates a new
    table each build and the aggregation may replace its partitioned parent, so it runs after every build;
    it changes nothing when the table is already secured. Partitions get no grants: only the parent,
    where row security applies, is readable.
    Skipped when the warehouse setup has not created the function yet (dbt run before any load).
-#}
{% macro row_security() -%}
    {%- if execute -%}
    do $row_security$
    begin
        if to_regprocedure('landing.apply_row_security(regclass)') is not null then
            perform landing.apply_row_security('{{ this.include(database=false) }}'::regclass);
        end if;
    end
    $row_security$
    {%- endif -%}
{%- endmacro %}


{#- state.model_build is created by an on-run-start hook, not a model: secure it there (same role and
    explicit commit as create_model_build_table, for the same reason). -#}
{% macro model_build_row_security() -%}
    {%- if execute -%}
    {{ dbt_role_statement() }}
    do $row_security$
    begin
        if to_regprocedure('landing.apply_row_security(regclass)') is not null then
            perform landing.apply_row_security('state.model_build'::regclass);
            if not has_table_privilege('attendance_district_read', 'state.model_build', 'select') then
                grant select on state.model_build to attendance_district_read;
            end if;
            if not has_table_privilege('attendance_district_write', 'state.model_build', 'insert') then
                grant select, insert, update on state.model_build to attendance_district_write;
            end if;
        end if;
    end
    $row_security$;
    commit
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}
