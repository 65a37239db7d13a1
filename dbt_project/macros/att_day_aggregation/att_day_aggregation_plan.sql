{#-
    What a run of att_day_aggregation does per selected district (docs/domain.md, "Aggregated attendance":
    the incremental result must equal the full recompute).

    att_day_aggregation_plan(target_relation, districts, parents, rebuild)
        Per selected district: the batch window and as-of dates of this run, and whether the district is
        rebuilt whole ("full") or incrementally. A district's landing changes are found by batch id in the
        window (previous horizon, horizon]:
          previous horizon = this model's landing_batch_id in state.model_build (the horizon it last
                             recorded for the district),
          horizon          = the smallest landing_batch_id its parent state models recorded for the district
                             (every batch up to it is in every parent table).
        The run records `horizon` as its own. A load committing while a parent builds is therefore read
        again by the next run instead of being skipped, and `dbt build --select att_day_aggregation`
        (parents not rebuilt) processes only what the parents already hold. A district is rebuilt whole
        when asked (--full-refresh), when it was never built, when it has no partition, or when a parent
        has never been built for it (no horizon).
-#}

{% macro att_day_aggregation_plan(target_relation, districts, parents, rebuild) -%}
    {%- if districts | length == 0 -%}
        {{- return([]) -}}
    {%- endif -%}
    {%- set query -%}
        with selected (district_code) as (
            values {% for code in districts %}('{{ code }}'){{ ', ' if not loop.last }}{% endfor %}
        ),

        parents as (
            select
                district_code,
                count(*) as built,
                count(landing_batch_id) as loaded,
                min(landing_batch_id) as horizon
            from state.model_build
            where model_name in ({% for name in parents %}'{{ name }}'{{ ', ' if not loop.last }}{% endfor %})
            group by district_code
        ),

        previous as (
            select district_code, landing_batch_id, as_of_date
            from state.model_build
            where model_name = '{{ target_relation.identifier }}'
        ),

        partitions as (
            select child.relname
            from pg_inherits
            join pg_class as child on child.oid = pg_inherits.inhrelid
            where pg_inherits.inhparent = to_regclass('{{ target_relation }}')
        )

        select
            selected.district_code,
            case when parents.built = {{ parents | length }} and parents.loaded = {{ parents | length }}
                then parents.horizon end as horizon,
            previous.landing_batch_id as previous_horizon,
            previous.as_of_date::text as previous_as_of,
            exists (
                select 1 from partitions
                where partitions.relname = '{{ target_relation.identifier }}__' || lower(selected.district_code)
            ) as has_partition
        from selected
        left join parents on parents.district_code = selected.district_code
        left join previous on previous.district_code = selected.district_code
        order by selected.district_code
    {%- endset -%}
    {%- set plan = [] -%}
    {%- for row in run_query(query).rows -%}
        {%- set full = rebuild
            or not row['has_partition']
            or row['horizon'] is none
            or row['previous_horizon'] is none
            or row['previous_as_of'] is none
            or row['previous_horizon'] > row['horizon'] -%}
        {%- do plan.append({
            'district_code': row['district_code'],
            'mode': 'full' if full else 'incremental',
            'horizon': row['horizon'],
            'previous_horizon': row['previous_horizon'],
            'previous_as_of': row['previous_as_of'],
        }) -%}
    {%- endfor -%}
    {{- return(plan) -}}
{%- endmacro %}


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
