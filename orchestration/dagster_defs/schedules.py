"""Schedules, run by the Dagster daemon (`attendance-sync ui` starts one with the webserver).

Both are on by default; pause one in the UI (Automation -> the schedule -> toggle) or with
`dagster schedule stop <name>`. Each tick requests ONE run covering every district of the registry.

  weekly_state_resync   ATTENDANCE_WEEKLY_CRON, default Sunday 02:00
  nightly_attendance    ATTENDANCE_NIGHTLY_CRON, default every day 01:00
in the time zone ATTENDANCE_TIMEZONE (default America/Denver, the state's time zone in dbt_project.yml).

An hourly sync in school hours is a supported setting: ATTENDANCE_NIGHTLY_CRON="0 7-17 * * 1-5". Each run
loads today's rows into landing; its as-of date stays the last complete day (yesterday in the state's zone).
"""

# No `from __future__ import annotations`: Dagster reads the op signatures' types at runtime.
import os

from dagster import (
    DefaultScheduleStatus,
    PartitionsDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

TIMEZONE_VARIABLE = "ATTENDANCE_TIMEZONE"
DEFAULT_TIMEZONE = "America/Denver"
WEEKLY_CRON_VARIABLE = "ATTENDANCE_WEEKLY_CRON"
NIGHTLY_CRON_VARIABLE = "ATTENDANCE_NIGHTLY_CRON"


def schedule_timezone() -> str:
    return os.environ.get(TIMEZONE_VARIABLE) or DEFAULT_TIMEZONE


def all_districts_run_request(partitions: PartitionsDefinition) -> RunRequest:
    """One run over every district: the partition range from the first to the last registry entry."""
    keys = partitions.get_partition_keys()
    return RunRequest(tags={ASSET_PARTITION_RANGE_START_TAG: keys[0],
                                             ASSET_PARTITION_RANGE_END_TAG: keys[-1]})


def _all_districts_schedule(job: UnresolvedAssetJobDefinition, partitions: PartitionsDefinition, cron: str,
                            description: str) -> ScheduleDefinition:
    @schedule(name=job.name, job=job, cron_schedule=cron, execution_timezone=schedule_timezone(),
              default_status=DefaultScheduleStatus.RUNNING, description=description)
    def _schedule(context: ScheduleEvaluationContext) -> RunRequest:
        return all_districts_run_request(partitions)

    return _schedule


def build_schedules(jobs: dict[str, UnresolvedAssetJobDefinition],
                    partitions: PartitionsDefinition) -> list[ScheduleDefinition]:
    from orchestration.dagster_defs.jobs import NIGHTLY, WEEKLY_RESYNC

    return [
        _all_districts_schedule(jobs[WEEKLY_RESYNC], partitions, os.environ.get(WEEKLY_CRON_VARIABLE, "0 2 * * 0"),
                                "Weekly resync of every district and object, one run."),
        _all_districts_schedule(jobs[NIGHTLY], partitions, os.environ.get(NIGHTLY_CRON_VARIABLE, "0 1 * * *"),
                                "Nightly landing loads, incremental aggregation and reports, one run."),
    ]
