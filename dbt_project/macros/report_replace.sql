{#-
    report_replace: the incremental strategy of the reports (dbt_project.yml: materialized incremental,
    full_refresh false). A run rebuilds only the districts whose report rows can have changed, with
    row-level statements in the model's transaction (readers keep reading the table; no swap, no
    ACCESS EXCLUSIVE lock for a reader's open transaction to hold up):

      report_plan() decides, per current district (registry) and per district the report last recorded:
        rebuild  the report has no state.report_build row for it; its report as-of date
                 (report_as_of_dates()) differs from the recorded one; a model the report reads (state or
                 report, from the model's dependencies) changed the district's rows since the report's
                 recorded build (state.model_build / state.report_build changed_at); or everything is
                 rebuilt (--full-refresh, the var state_replace: true, no record of this report at all)
        drop     the report recorded it but the registry no longer lists it: its rows go
      the model reads only the rebuilt districts (report_district_filter() in its WHERE), then
        delete from <report> where district_code in (<rebuilt and dropped>);   (everything when full)
        insert into <report> select * from <temp>;
        state.report_build: rebuilt districts recorded (built_at, as-of date, changed_at), dropped ones
        forgotten
      A run where no district changed reads nothing and writes nothing.

    The statewide report (statewide_student_attendance, by state_id across districts; report_strategy
    'statewide' in its config) cannot be split by district: when any district is rebuilt or dropped it
    is recomputed from student_attendance (a few rows per student) and only its changed rows are
    deleted and inserted; otherwise it is left alone.

    The first build (no table) is a plain `create table as` of the whole model, recorded like a rebuild
    of every current district.
-#}

{% macro get_incremental_report_replace_sql(arg_dict) -%}
    {%- set target_relation = arg_dict['target_relation'] -%}
    {%- set temp_relation = arg_dict['temp_relation'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {%- set plan = report_plan() -%}
    {%- set touched = plan.rebuild + plan.drop -%}
    {%- if config.get('report_strategy') == 'statewide' -%}
        {%- if touched | length > 0 %}
    delete from {{ target_relation }} as target
    using (
        select state_id, end_year from {{ target_relation }}
        except
        select state_id, end_year from (
            select {{ columns }} from {{ temp_relation }}
            intersect all
            select {{ columns }} from {{ target_relation }}
        ) as same
    ) as changed
    where target.state_id = changed.state_id and target.end_year = changed.end_year;

    insert into {{ target_relation }} ({{ columns }})
    select {{ columns }} from {{ temp_relation }}
    except all
    select {{ columns }} from {{ target_relation }};
        {%- else %}
    select 1;  -- nothing changed
        {%- endif %}
    {%- else -%}
        {%- if plan.full %}
    delete from {{ target_relation }};
        {%- elif touched | length > 0 %}
    delete from {{ target_relation }}
    where {{ district_filter('district_code', touched) }};
        {%- endif %}

    insert into {{ target_relation }} ({{ columns }})
    select {{ columns }}
    from {{ temp_relation }};
    {%- endif %}
{%- endmacro %}


{#- The post-hook of the reports: in state.report_build the rebuilt districts recorded, the dropped ones
    forgotten (a district that comes back is then rebuilt). The plan is read again, as the strategy read
    it (nothing it reads has changed since); after a first build it is the full plan. -#}
{% macro record_report_build() -%}
    {%- if not execute -%}
        {{- return('select 1') -}}
    {%- endif -%}
    {%- set plan = report_plan() -%}
    select 1;
    {%- if plan.rebuild | length > 0 %}
    insert into state.report_build as build
        (report_name, district_code, built_at, as_of_date, changed_at, origin, build_seq)
    values
        {%- for code in plan.rebuild %}
        ('{{ this.identifier }}', '{{ code }}', clock_timestamp(), date '{{ plan.as_of[code] }}', clock_timestamp(),
         {{ run_origin() }}, nextval('state.model_build_seq'))
        {{- ',' if not loop.last }}
        {%- endfor %}
    on conflict (report_name, district_code) do update
    set built_at = excluded.built_at, as_of_date = excluded.as_of_date, changed_at = excluded.changed_at,
        origin = excluded.origin, build_seq = excluded.build_seq;
    {%- endif %}
    {%- if plan.drop | length > 0 %}
    delete from state.report_build
    where report_name = '{{ this.identifier }}' and {{ district_filter('district_code', plan.drop) }};
    {%- endif %}
{%- endmacro %}


{#-
    report_plan(): {'full': bool, 'rebuild': [codes], 'drop': [codes], 'as_of': {code: ISO date}} for this
    report (see above). Read from the database each time it is called (the model's compilation, the
    strategy); nothing writes what it reads between the two (one writer at a time).
-#}
{% macro report_plan() -%}
    {%- set parents = [] -%}
    {#- Not district: the reports take only its codes, and the district lists come from the registry. -#}
    {%- for node in model.depends_on.nodes if node.startswith('model.') and node.split('.')[-1] != 'district' -%}
        {%- do parents.append(node.split('.')[-1]) -%}
    {%- endfor -%}
    {%- set exists = run_query(
        "select to_regclass('" ~ this.include(database=false) ~ "') is not null and exists ("
        ~ " select from state.report_build where report_name = '" ~ this.identifier ~ "')").rows[0][0] -%}
    {%- set full = flags.FULL_REFRESH or state_replace_requested() or not exists -%}
    {%- set query -%}
        with current_districts as (
            {{ report_as_of_dates() }}
        ),

        previous as (
            select district_code, built_at, as_of_date
            from state.report_build
            where report_name = '{{ this.identifier }}'
        ),

        parent_changes as (
            select district_code, max(changed_at) as changed_at, bool_or(changed_at is null) as unknown
            from (
                select district_code, changed_at from state.model_build
                where model_name in ({{ sql_strings(parents) }})
                union all
                select district_code, changed_at from state.report_build
                where report_name in ({{ sql_strings(parents) }})
            ) as changes
            group by district_code
        )

        select
            current_districts.district_code,
            current_districts.as_of_date::text as as_of_date,
            {{ 'true' if full else 'false' }}
            or previous.district_code is null
            or previous.as_of_date is distinct from current_districts.as_of_date
            or coalesce(parent_changes.unknown, false)
            or coalesce(parent_changes.changed_at > previous.built_at, false) as rebuild
        from current_districts
        left join previous on previous.district_code = current_districts.district_code
        left join parent_changes on parent_changes.district_code = current_districts.district_code
        union all
        select previous.district_code, null, false
        from previous
        where previous.district_code not in (select current_districts.district_code from current_districts)
        order by 1
    {%- endset -%}
    {%- set plan = {'full': full, 'rebuild': [], 'drop': [], 'as_of': {}} -%}
    {%- for row in run_query(query).rows -%}
        {%- if row['as_of_date'] is none -%}
            {%- do plan.drop.append(row['district_code']) -%}
        {%- elif row['rebuild'] -%}
            {%- do plan.rebuild.append(row['district_code']) -%}
            {%- do plan.as_of.update({row['district_code']: row['as_of_date']}) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ log(this.identifier ~ ': rebuild ' ~ (plan.rebuild | join(', ') or 'none') ~ '; drop '
           ~ (plan.drop | join(', ') or 'none') ~ ('; full' if full else ''), info=false) }}
    {{- return(plan) -}}
{%- endmacro %}


{% macro sql_strings(values) -%}
    {%- for value in values %}'{{ value | replace("'", "''") }}'{{ ', ' if not loop.last }}{% endfor -%}
    {%- if values | length == 0 %}null{% endif -%}
{%- endmacro %}


{#-
    report_district_filter(column='district_code'): a report's WHERE on the district of its rows: in an
    incremental run, the districts report_plan() rebuilds (none: false; for the statewide report, true
    when any district is rebuilt or dropped); otherwise (first build, dbt compile or show, unit tests)
    true.
-#}
{% macro report_district_filter(column='district_code') -%}
    {%- if not execute or in_unit_test() or flags.WHICH not in ('run', 'build') or load_relation(this) is none -%}
        true
    {%- else -%}
        {%- set plan = report_plan() -%}
        {%- if config.get('report_strategy') == 'statewide' -%}
            {{ 'true' if (plan.rebuild + plan.drop) | length > 0 else 'false' }}
        {%- else -%}
            {{ district_filter(column, plan.rebuild) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
