"""The one way dbt runs: a subprocess with the warehouse's settings, and its results."""
