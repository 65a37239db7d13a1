"""The sync status in Dagster: the `monitoring/sync_status` asset, its check, the sensor refreshing it.

The query and its formatting are in orchestration.monitoring.sync_status, which needs no Dagster.
"""

# No `from __future__ import annotations`: Dagster reads the op signatures' types at runtime.
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    RunStatusSensorContext,
    SensorDefinition,
    SkipReason,
    asset,
    define_asset_job,
    run_status_sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from orchestration.dagster_defs.district_checks import CHECK_RUN_TAG
from orchestration.monitoring.sync_status import (
    DEFAULT_STALE_AFTER_HOURS,
    STALE_AFTER_VARIABLE,
    format_markdown,
    format_table,
    sync_status_rows,
)

SYNC_STATUS_KEY = AssetKey(["monitoring", "sync_status"])


def build_sync_status_asset() -> AssetsDefinition:
    @asset(key=SYNC_STATUS_KEY, group_name="monitoring",
           description="Per district: last successful landing load and state build, and how stale the state is.",
           check_specs=[AssetCheckSpec("districts_fresh", asset=SYNC_STATUS_KEY,
                                       description="Every district's state data is younger than "
                                       f"${STALE_AFTER_VARIABLE} hours (default {DEFAULT_STALE_AFTER_HOURS:g}).")])
    def sync_status(context: AssetExecutionContext) -> Any:
        rows = sync_status_rows()
        context.log.info("\n" + format_table(rows))
        yield MaterializeResult(metadata=sync_status_metadata(rows))
        verdict = districts_fresh_verdict(rows)
        yield AssetCheckResult(check_name="districts_fresh", passed=verdict.passed, severity=verdict.severity,
                               metadata=verdict.metadata)

    return sync_status


def sync_status_metadata(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sync_status materialization's metadata: the status table and each district's stale hours."""
    stale = [r["district"] for r in rows if r["stale"]]
    metadata: dict[str, Any] = {
        "status": MetadataValue.md(format_markdown(rows)),
        "stale_districts": MetadataValue.text(", ".join(stale) or "none"),
    }
    for row in rows:
        metadata[f"{row['district']} stale hours"] = MetadataValue.float(
            round(row["stale_for"].total_seconds() / 3600, 1) if row["stale_for"] else -1.0)
    return metadata


def districts_fresh_verdict(rows: list[dict[str, Any]]) -> AssetCheckEvaluation:
    """The districts_fresh check of sync_status: warns on a stale district, fails on one never synced."""
    stale = [r["district"] for r in rows if r["stale"]]
    never = [r["district"] for r in rows if r["stale_for"] is None]
    return AssetCheckEvaluation(
        asset_key=SYNC_STATUS_KEY, check_name="districts_fresh", passed=not stale,
        severity=AssetCheckSeverity.ERROR if never else AssetCheckSeverity.WARN,
        metadata={"stale": MetadataValue.text(", ".join(stale) or "none"),
                  "never_synced": MetadataValue.text(", ".join(never) or "none")})


SYNC_STATUS_JOB = "refresh_sync_status"


def sync_status_job() -> UnresolvedAssetJobDefinition:
    return define_asset_job(SYNC_STATUS_JOB, selection=AssetSelection.assets(SYNC_STATUS_KEY),
                            description="Recompute the sync status table (after every successful run).")


def build_sync_status_sensor(job: UnresolvedAssetJobDefinition) -> SensorDefinition:
    """After every successful run of this code location, refresh the sync status shown in the UI."""

    @run_status_sensor(run_status=DagsterRunStatus.SUCCESS, request_job=job, name="sync_status_after_runs",
                       default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
    def sync_status_after_runs(context: RunStatusSensorContext) -> RunRequest | SkipReason:
        if context.dagster_run.job_name == SYNC_STATUS_JOB:
            return SkipReason("the run was a sync status refresh")
        if CHECK_RUN_TAG in context.dagster_run.tags:
            return SkipReason("the run only evaluated checks (district_checks.py)")
        return RunRequest(run_key=f"after-{context.dagster_run.run_id}")

    return sync_status_after_runs
