"""Districts as partitions, read from the same registry file that the loader and dbt use.

The definition is computed from the registry each time the code location loads, so a new registry entry
is a new partition after a reload (the UI's "Reload definitions", or restarting `attendance-sync ui`),
with no code change. Static partitions keep every district's history visible and need no sensor to keep
a dynamic partition set in step with the file.
"""

from __future__ import annotations

from dagster import StaticPartitionsDefinition

from orchestration.districts.registry import load_registry


def district_codes() -> list[str]:
    """Every district code of the registry, in the order the file lists them."""
    return [district.code for district in load_registry()]


def district_partitions() -> StaticPartitionsDefinition:
    return StaticPartitionsDefinition(district_codes())
