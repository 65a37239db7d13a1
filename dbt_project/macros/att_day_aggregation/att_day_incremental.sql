{#-
    att_day_incremental: the materialization of state.att_day_aggregation (docs/domain.md, "Aggregated
    attendance"; docs/architecture.md, "Data flow").

    The table is LIST-partitioned by district_code, one partition per district
    (att_day_aggregation__<code>), each with a unique index on (calendar_id, person_id, date). Per selected
    district (the `districts` var, else every district of the registry) a run either

      rebuilds it whole   (--full-refresh, i.e. the Attendance Aggregation Refresh; or a district never
                          built, see att_day_aggregation_plan): the model's SQL for each such district
                          goes into a new table (create table as), indexed, and swapped in for the
                          district's old partition. Other districts' partitions are never touched.
                          Only a table of another shape (missing, not partitioned, other columns than the
                          model's) is replaced whole; districts outside the selection then come back with
                          their next run (they have no partition, so it rebuilds them).
      or updates it       the keys of what changed since the district's last build are collected in
                          pg_temp.att_day_aggregation__scope (att_day_aggregation_build_scope), their rows
                          deleted, and the model's SQL restricted to that scope inserted.
      or leaves it alone  when no landing batch arrived since its last build and the as-of date is the
                          same (nothing it reads can have changed).

    Both paths compute the attendance_days step into a temp table first (its real size then guides the
    planner, and its sort may run in parallel), and run the heavy statements with nested loops and merge
    joins off: the planner underestimates the enrollment-date range join by orders of magnitude
    (docs/architecture.md, "Performance notes").

    Finally the run records, per selected district, its backdated changes in state.backdated_change
    (att_day_aggregation_backdated.sql) and its horizon and as-of date in state.model_build
    (record_model_build, macros/model_build.sql). Everything happens in one transaction, under a
    row lock (landing.writer_lock) that serialises builds of this model: a failure leaves table and records
    as they were.
-#}

{% materialization att_day_incremental, adapter='postgres' %}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set grant_config = config.get('grants') -%}
    {#- Not should_full_refresh(): the state folder sets full_refresh: false for its district_replace
        tables, while here --full-refresh is the Attendance Aggregation Refresh of the selected districts. -#}
    {%- set full_refresh = flags.FULL_REFRESH -%}
    {%- set districts = selected_districts() -%}
    {%- set as_of = as_of_date_value() -%}
    {%- set parents = att_day_aggregation_parents() -%}

    {%- if flags.EMPTY -%}
        {#- --empty would read every parent as empty and delete the scope's rows: leave the table alone. -#}
        {{ log('att_day_aggregation: --empty run, table left unchanged', info=true) }}
        {%- call statement('main') -%} select 1 {%- endcall -%}
        {{ return({'relations': [target_relation]}) }}
    {%- endif -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {#- A row lock of landing.writer_lock, which only the write role may take (an advisory lock, any user). -#}
    {%- call statement('att_day_aggregation_lock') -%}
        insert into landing.writer_lock (name) values ('att_day_aggregation') on conflict (name) do nothing;
        select name from landing.writer_lock where name = 'att_day_aggregation' for no key update
    {%- endcall -%}

    {#- A new table, or one of another shape (not partitioned, other columns), replaces the old one. -#}
    {%- do att_day_aggregation_model_columns() -%}
    {%- set replace_table = existing_relation is none or not att_day_aggregation_same_shape(target_relation) -%}
    {%- set plan = att_day_aggregation_plan(target_relation, districts, parents, replace_table or full_refresh) -%}
    {%- set rebuilt = plan | selectattr('mode', 'equalto', 'full') | map(attribute='district_code') | list -%}
    {#- A district with no landing batch in its window and the same as-of date has nothing to recompute:
        skipping it spares the scope and attendance scans (a resync without new loads, a repeated run). -#}
    {%- set updated = [] -%}
    {%- set unchanged = [] -%}
    {%- for district in plan if district.mode == 'incremental' -%}
        {%- if district.horizon > district.previous_horizon or district.previous_as_of != as_of -%}
            {%- do updated.append(district) -%}
        {%- else -%}
            {%- do unchanged.append(district.district_code) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ log('att_day_aggregation as of ' ~ as_of ~ ': rebuild ' ~ (rebuilt | join(', ') or 'none')
           ~ '; update ' ~ (updated | map(attribute='district_code') | join(', ') or 'none')
           ~ '; unchanged ' ~ (unchanged | join(', ') or 'none'), info=true) }}

    {#- Backdated changes: the rows they touch, before this build changes them. -#}
    {%- do att_day_aggregation_backdated_collect(target_relation, plan, replace_table) -%}

    {%- if replace_table or rebuilt | length > 0 -%}
        {%- do att_day_aggregation_rebuild(target_relation, existing_relation, rebuilt, replace_table) -%}
    {%- endif -%}
    {%- if updated | length > 0 -%}
        {%- do att_day_aggregation_update(target_relation, updated, as_of) -%}
    {%- endif -%}

    {%- do att_day_aggregation_backdated_record(target_relation, plan, as_of, replace_table, unchanged) -%}

    {%- call statement('main') -%}
        drop table if exists pg_temp.landing_horizon;
        create temporary table landing_horizon (district_code text, landing_batch_id bigint) on commit drop;
        {%- if plan | length > 0 %}
        insert into pg_temp.landing_horizon values
        {%- for district in plan %}
            ('{{ district.district_code }}', {{ district.horizon if district.horizon is not none else 'null' }})
            {{- ',' if not loop.last }}
        {%- endfor %};
        {%- endif %}
        {{ record_model_build(force=true, as_of_date=as_of_date(), districts=districts) }}
    {%- endcall -%}

    {%- set should_revoke = should_revoke(existing_relation, full_refresh_mode=replace_table) -%}
    {%- do apply_grants(target_relation, grant_config, should_revoke=should_revoke) -%}
    {%- do persist_docs(target_relation, model) -%}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {%- do adapter.commit() -%}
    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
