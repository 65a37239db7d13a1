{#-
    Which districts a run builds.

    The `districts` var (a YAML list or a comma-separated string) names them, in any case (d01 is D01:
    codes are upper case everywhere); empty means every current district: those of landing.district
    that the registry listed when the Python tools last synced it (in_registry). A code the registry does not list is refused
    with an error naming it, before anything is written. The list is resolved once per call from the
    database, so it is only known at execution time; at parse time the macros return placeholders.

    registry_districts()          -> every current district code in landing.district, sorted
    current_district_filter(col)  -> SQL predicate keeping the current districts (reports)
    requested_districts()         -> the codes the `districts` var names (a list; empty = all)
    selected_districts()          -> the validated codes this run builds
    district_filter(column)       -> SQL predicate `column in ('D01', 'D03')` over the selected districts,
                                     with literals so PostgreSQL prunes landing partitions at plan time
    validate_district_selection() -> an on-run-start hook body: fails the run on an unknown code

    In a unit test the fixtures are the data: the `districts` var is taken as given and no var means
    no filter (the registry is not read).
-#}

{% macro requested_districts() -%}
    {%- set raw = var('districts', []) -%}
    {%- if raw is none -%}
        {%- set items = [] -%}
    {%- elif raw is string -%}
        {%- set items = raw.split(',') -%}
    {%- elif raw is iterable -%}
        {%- set items = raw -%}
    {%- else -%}
        {%- set items = [raw] -%}
    {%- endif -%}
    {%- set codes = [] -%}
    {%- for item in items -%}
        {%- set code = item | string | trim | upper -%}
        {%- if code != '' and code not in codes -%}
            {%- if not modules.re.match('^[A-Za-z0-9_]{1,30}$', code) -%}
                {{ exceptions.raise_compiler_error(
                    "var districts: '" ~ code ~ "' is not a valid district code (1-30 letters, digits or underscores)") }}
            {%- endif -%}
            {%- do codes.append(code) -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return(codes) -}}
{%- endmacro %}


{% macro registry_districts() -%}
    {%- if not execute -%}
        {{- return([]) -}}
    {%- endif -%}
    {#- to_jsonb: a warehouse made before in_registry existed reads every district as current. -#}
    {%- set result = run_query(
        "select district_code from landing.district as d"
        ~ " where coalesce((to_jsonb(d) ->> 'in_registry')::boolean, true) order by district_code") -%}
    {%- set codes = result.columns[0].values() | list -%}
    {%- for code in codes if code != code | upper -%}
        {{ exceptions.raise_compiler_error(
            "landing.district holds district code '" ~ code ~ "', which is not upper case; district codes are "
            ~ "upper case (d01 is D01). Run attendance-sync load to see how to resolve it.") }}
    {%- endfor -%}
    {{- return(codes) -}}
{%- endmacro %}


{% macro current_district_filter(column='district_code') -%}
    {%- if not execute or in_unit_test() -%}
        true
    {%- else -%}
        {{ district_filter(column, registry_districts()) }}
    {%- endif -%}
{%- endmacro %}


{% macro in_unit_test() -%}
    {{- return(model is defined and model is mapping and model.get('resource_type') == 'unit_test') -}}
{%- endmacro %}


{% macro selected_districts() -%}
    {%- set requested = requested_districts() -%}
    {#- At parse time nothing is known; a unit test's fixtures are the whole data, so no registry check. -#}
    {%- if not execute or in_unit_test() -%}
        {{- return(requested) -}}
    {%- endif -%}
    {%- set registry = registry_districts() -%}
    {%- if requested | length == 0 -%}
        {{- return(registry) -}}
    {%- endif -%}
    {%- set unknown = [] -%}
    {%- for code in requested if code not in registry -%}
        {%- do unknown.append(code) -%}
    {%- endfor -%}
    {%- if unknown | length > 0 -%}
        {{ exceptions.raise_compiler_error(
            "district(s) " ~ unknown | join(', ') ~ " not in the district registry (landing.district); known: "
            ~ (registry | join(', ') if registry else 'none') ~ ". Load the district first or fix the districts var.") }}
    {%- endif -%}
    {{- return(requested) -}}
{%- endmacro %}


{% macro district_filter(column='district_code', districts=none) -%}
    {%- set codes = selected_districts() if districts is none else districts -%}
    {%- if not execute or (in_unit_test() and codes | length == 0) -%}
        true
    {%- elif codes | length == 0 -%}
        false
    {%- else -%}
        {{ column }} in ({% for code in codes %}'{{ code | replace("'", "''") }}'{{ ', ' if not loop.last }}{% endfor %})
    {%- endif -%}
{%- endmacro %}


{% macro validate_district_selection() -%}
    {%- if execute -%}
        {%- do selected_districts() -%}
    {%- endif -%}
    select 1
{%- endmacro %}
