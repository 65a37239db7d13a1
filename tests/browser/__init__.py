"""The Dagster UI driven in a real browser."""
