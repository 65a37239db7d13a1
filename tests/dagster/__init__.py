"""Dagster: the asset graph, partition runs, jobs, schedules and sync status, in-process."""
