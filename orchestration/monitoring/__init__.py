"""Sync status per district: the query and its formatting, without Dagster."""
