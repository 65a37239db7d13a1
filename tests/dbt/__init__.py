"""The dbt models: state, reports, att_day_aggregation (incremental equals full) and the as-of date."""
