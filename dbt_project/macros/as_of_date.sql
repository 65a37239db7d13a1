{#-
    The run's as-of date (docs/domain.md, "Aggregated attendance", rule 0): the `as_of_date` var when set
    (tests and reruns of the past pin it), else the last complete day: yesterday in the state's time zone,
    taken from the run's start so every model of one run agrees. Today never counts by default: the
    nightly run starts before any attendance is taken, and the source system's nightly job covers the
    prior day.

    The state's time zone is the `state_time_zone` var (the project's runner always passes it, from
    $ATTENDANCE_TIMEZONE), else $ATTENDANCE_TIMEZONE for a plain `dbt build`, else America/Denver.

    as_of_date_value() -> 'YYYY-MM-DD' (a Python string), as_of_date() -> a SQL date literal.
-#}
{% macro as_of_date_value() -%}
    {%- set configured = var('as_of_date', none) -%}
    {%- if configured is not none and (configured | string | trim) != '' -%}
        {%- set text = configured | string | trim -%}
        {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', text) -%}
            {{ exceptions.raise_compiler_error("var as_of_date must be an ISO date (YYYY-MM-DD), got '" ~ text ~ "'") }}
        {%- endif -%}
        {%- do modules.datetime.date.fromisoformat(text) -%}
        {{- return(text) -}}
    {%- endif -%}
    {%- set zone = modules.pytz.timezone(state_time_zone()) -%}
    {%- set yesterday = run_started_at.astimezone(zone).date() - modules.datetime.timedelta(days=1) -%}
    {{- return(yesterday.isoformat()) -}}
{%- endmacro %}

{% macro state_time_zone() -%}
    {%- set configured = var('state_time_zone', none) -%}
    {%- set name = (configured | string | trim) if configured else '' -%}
    {%- set name = name or (env_var('ATTENDANCE_TIMEZONE', '') | trim) or 'America/Denver' -%}
    {%- if name not in modules.pytz.all_timezones_set -%}
        {{ exceptions.raise_compiler_error(
            "state_time_zone (ATTENDANCE_TIMEZONE) must be a time zone such as America/Denver, got '" ~ name ~ "'") }}
    {%- endif -%}
    {{- return(name) -}}
{%- endmacro %}

{% macro as_of_date() -%}
    date '{{ as_of_date_value() }}'
{%- endmacro %}
