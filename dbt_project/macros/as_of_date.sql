{#-
    The run's as-of date (DOMAIN.md, "Aggregated attendance", rule 0): the `as_of_date` var when set
    (tests and reruns of the past pin it), else today in the state's time zone (`state_time_zone` var),
    taken from the run's start so every model of one run agrees.

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
    {%- set zone = modules.pytz.timezone(var('state_time_zone', 'America/Denver')) -%}
    {{- return(run_started_at.astimezone(zone).date().isoformat()) -}}
{%- endmacro %}

{% macro as_of_date() -%}
    date '{{ as_of_date_value() }}'
{%- endmacro %}
