"""Which path wrote a load or a build: a Dagster run, a CLI command, or plain dbt.

Recorded with every landing load (landing.load_batch.origin, landing.load_failure.origin) and every model
build (state.model_build.origin, state.report_build.origin), so the Dagster sensor that reports runless
materializations (dagster_defs/warehouse_sensor.py) can skip what a Dagster run already reported.

The origin travels to dbt in the environment variable below (macros/run_origin.sql reads it); a dbt
started by hand has none and records `dbt invocation <invocation_id>` instead.
"""

from __future__ import annotations

import os

ORIGIN_VARIABLE = "ATTENDANCE_RUN_ORIGIN"
DAGSTER_PREFIX = "dagster run "
CLI_PREFIX = "attendance-sync "
# A load run from Python without any of the paths above (a script, a notebook).
UNKNOWN_ORIGIN = "python"


def dagster_run_origin(run_id: str) -> str:
    return f"{DAGSTER_PREFIX}{run_id}"


def cli_origin(command: str) -> str:
    return f"{CLI_PREFIX}{command}"


def is_dagster_run(origin: str | None) -> bool:
    """Whether a Dagster run made the write (and so reported it itself)."""
    return bool(origin) and str(origin).startswith(DAGSTER_PREFIX)


def current_origin() -> str:
    """The origin this process was started with ($ATTENDANCE_RUN_ORIGIN), else UNKNOWN_ORIGIN."""
    return os.environ.get(ORIGIN_VARIABLE, "").strip() or UNKNOWN_ORIGIN
