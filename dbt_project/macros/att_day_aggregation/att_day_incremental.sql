{#-
    att_day_incremental: the materialization of state.att_day_aggregation (DOMAIN.md, "Aggregated
    attendance"; ARCHITECTURE.md, "Data flow").

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
    (ARCHITECTURE.md, "Performance notes").

    Finally the run records, per selected district, its horizon and as-of date in state.model_build
    (record_model_build, macros/district_replace.sql). Everything happens in one transaction, under a
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

    {%- if replace_table or rebuilt | length > 0 -%}
        {%- do att_day_aggregation_rebuild(target_relation, existing_relation, rebuilt, replace_table) -%}
    {%- endif -%}
    {%- if updated | length > 0 -%}
        {%- do att_day_aggregation_update(target_relation, updated, as_of) -%}
    {%- endif -%}

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


{#- The identifiers (aliases) of the models this one refs: the parents whose horizons bound a run. -#}
{% macro att_day_aggregation_parents() -%}
    {%- set names = [] -%}
    {%- for node_id in model['depends_on']['nodes'] -%}
        {%- set node = graph.nodes.get(node_id) -%}
        {%- if node is not none and node['resource_type'] == 'model' -%}
            {%- do names.append(node['alias'] or node['name']) -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return(names | sort) -}}
{%- endmacro %}


{#- pg_temp.att_day_aggregation__columns: an empty table with the model's columns. -#}
{% macro att_day_aggregation_model_columns() -%}
    {%- call statement('att_day_aggregation_columns') -%}
        drop table if exists pg_temp.att_day_aggregation__columns;
        create temporary table att_day_aggregation__columns on commit drop as
        select * from (
            {{ att_day_aggregation_render({'districts': ['-']}) }}
        ) as model_rows
        limit 0;
    {%- endcall -%}
{%- endmacro %}


{#- Whether `relation` is a partitioned table with exactly the model's columns. -#}
{% macro att_day_aggregation_same_shape(relation) -%}
    {%- set query -%}
        with columns as (
            select
                attrelid,
                string_agg(attname || ' ' || format_type(atttypid, atttypmod) || case when attnotnull then ' not null' else '' end,
                           ', ' order by attnum) as list
            from pg_attribute
            where attnum > 0 and not attisdropped
                and attrelid in ('pg_temp.att_day_aggregation__columns'::regclass, to_regclass('{{ relation }}'))
            group by attrelid
        )
        select
            (select relkind = 'p' from pg_class where oid = to_regclass('{{ relation }}'))
            and (select list from columns where attrelid = to_regclass('{{ relation }}'))
                = (select list from columns where attrelid = 'pg_temp.att_day_aggregation__columns'::regclass)
    {%- endset -%}
    {%- set result = run_query(query) -%}
    {{- return(result.rows[0][0] is true) -}}
{%- endmacro %}


{% macro att_day_aggregation_partition_name(relation, district_code, staging=false) -%}
    {{- relation.identifier ~ ('__dbt_new' if staging else '') ~ '__' ~ (district_code | lower) -}}
{%- endmacro %}


{#- Run the heavy statements with hash joins only (see the header). -#}
{% macro att_day_aggregation_planner(hash_joins_only) -%}
    set local enable_nestloop = {{ 'off' if hash_joins_only else 'on' }};
    set local enable_mergejoin = {{ 'off' if hash_joins_only else 'on' }};
{%- endmacro %}


{#- pg_temp.att_day_aggregation__<step>: the model's `step` CTE ('attendance' or 'attendance_days') for
    `options`, analyzed, so that the statements reading it are planned on its real size. Returns its name. -#}
{% macro att_day_aggregation_stage(step, options, hash_joins_only=true) -%}
    {%- set stage_options = {'output': step} -%}
    {%- do stage_options.update(options) -%}
    {%- call statement('att_day_aggregation_' ~ step) -%}
        {{ att_day_aggregation_planner(hash_joins_only) }}
        drop table if exists pg_temp.att_day_aggregation__{{ step }};
        create temporary table att_day_aggregation__{{ step }} on commit drop as
        {{ att_day_aggregation_render(stage_options) }};
        analyze pg_temp.att_day_aggregation__{{ step }};
    {%- endcall -%}
    {{- return('pg_temp.att_day_aggregation__' ~ step) -}}
{%- endmacro %}


{#- Whole districts: each district's rows into a new table (`create table as`, which writes far faster
    than an insert routed through the partitioned table), indexed, then swapped in for its partition. -#}
{% macro att_day_aggregation_rebuild(target_relation, existing_relation, districts, replace_table) -%}
    {%- if districts | length > 0 -%}
        {%- do att_day_aggregation_stage('attendance_days', {'districts': districts}) -%}
        {%- call statement('att_day_aggregation_stage_index') -%}
            create index on pg_temp.att_day_aggregation__attendance_days using brin (district_code);
        {%- endcall -%}
    {%- endif -%}

    {%- for code in districts -%}
        {%- set new_name = att_day_aggregation_partition_name(target_relation, code, staging=true) -%}
        {%- call statement('att_day_aggregation_rebuild_district') -%}
            {{ att_day_aggregation_planner(true) }}
            drop table if exists {{ target_relation.schema }}.{{ new_name }};
            -- No autovacuum for the inserts of the build itself (it is analyzed below): one running on a
            -- partition when the next refresh swaps it makes that swap wait for it. Deletes by incremental
            -- runs still trigger autovacuum as usual.
            create table {{ target_relation.schema }}.{{ new_name }}
                with (autovacuum_vacuum_insert_threshold = -1) as
            {{ att_day_aggregation_render({
                'districts': [code], 'attendance_days': 'pg_temp.att_day_aggregation__attendance_days'}) }};
            create unique index {{ new_name }}_key
                on {{ target_relation.schema }}.{{ new_name }} (calendar_id, person_id, date);
            {{ att_day_aggregation_planner(false) }}
        {%- endcall -%}
    {%- endfor -%}

    {%- call statement('att_day_aggregation_swap') -%}
        {%- if replace_table %}
        drop table if exists {{ target_relation }} cascade;
        create table {{ target_relation }} (like pg_temp.att_day_aggregation__columns)
            partition by list (district_code);
        {%- endif %}
        {%- for code in districts %}
        {%- set new_name = att_day_aggregation_partition_name(target_relation, code, staging=true) %}
        {%- set final_name = att_day_aggregation_partition_name(target_relation, code) %}
        drop table if exists {{ target_relation.schema }}.{{ final_name }};
        alter table {{ target_relation.schema }}.{{ new_name }} rename to {{ final_name }};
        alter index {{ target_relation.schema }}.{{ new_name }}_key rename to {{ final_name }}_key;
        alter table {{ target_relation }} attach partition {{ target_relation.schema }}.{{ final_name }}
            for values in ('{{ code }}');
        {%- endfor %}
        drop table if exists pg_temp.att_day_aggregation__attendance_days;
        -- Statistics now, from small samples (cheap): the next incremental run's lookups need them, and
        -- autovacuum never analyzes a partitioned table itself.
        set local default_statistics_target = 10;
        {%- for code in districts %}
        analyze {{ target_relation.schema }}.{{ att_day_aggregation_partition_name(target_relation, code) }};
        {%- endfor %}
        analyze {{ target_relation }};
        reset default_statistics_target;
    {%- endcall -%}
    {%- if existing_relation is not none and replace_table -%}
        {%- do adapter.cache_dropped(existing_relation) -%}
    {%- endif -%}
    {%- do adapter.cache_added(target_relation) -%}
{%- endmacro %}


{#- Incremental districts: delete the scope's rows, insert the model's rows for the scope. -#}
{% macro att_day_aggregation_update(target_relation, windows, as_of) -%}
    {%- set codes = windows | map(attribute='district_code') | list -%}
    {%- do att_day_aggregation_build_scope(target_relation, windows, as_of) -%}
    {%- set options = {'districts': codes, 'scope': 'pg_temp.att_day_aggregation__scope'} -%}
    {#- The scope's attendance rows first (a scan with a hashed probe, no joins to plan). -#}
    {%- do options.update({'attendance': att_day_aggregation_stage('attendance', options, hash_joins_only=false)}) -%}
    {%- do options.update({'attendance_days': att_day_aggregation_stage('attendance_days', options)}) -%}
    {%- call statement('att_day_aggregation_delete_rows') -%}
        {{ att_day_aggregation_planner(false) }}
        -- A district's rows never pass the as-of date of its last run: later keys need no lookup.
        delete from {{ target_relation }} as existing
        using pg_temp.att_day_aggregation__scope as scope
        join pg_temp.att_day_aggregation__window as window_ on window_.district_code = scope.district_code
        where existing.district_code = scope.district_code
            and existing.calendar_id = scope.calendar_id
            and existing.person_id = scope.person_id
            and existing.date = scope.date
            and scope.date <= window_.low_as_of;
    {%- endcall -%}
    {%- call statement('att_day_aggregation_insert_rows') -%}
        {{ att_day_aggregation_planner(true) }}
        insert into {{ target_relation }}
        {{ att_day_aggregation_render(options) }};
        {{ att_day_aggregation_planner(false) }}
    {%- endcall -%}
{%- endmacro %}
