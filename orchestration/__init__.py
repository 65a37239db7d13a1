"""District-to-state attendance sync: landing loads, dbt State Edition models, Dagster orchestration."""
