"""Per district partition checks on the data assets, so the catalog shows which districts are behind.

`district_fresh` (landing and state assets): the district's data is younger than
$ATTENDANCE_STALE_AFTER_HOURS, the rule of `monitoring/sync_status`: for a state asset the age of the
landing data its state was built from ("state data as of"), for a landing asset the age of its last load.
`last_load_ok` (landing assets): the district's last load attempt committed.

The warehouse sensor (warehouse_sensor.py) launches a run of the `evaluate_district_checks` job for a district
whenever one of its verdicts changes; they can also be executed from the UI for a partition.
"""

# No `from __future__ import annotations`: Dagster reads the op signatures' types at runtime.
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetSelection,
    MetadataValue,
    PartitionKeyRange,
    PartitionsDefinition,
    define_asset_job,
    multi_asset_check,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from orchestration.dbt.runner import state_time_zone
from orchestration.monitoring.sync_status import (
    DEFAULT_STALE_AFTER_HOURS,
    STALE_AFTER_VARIABLE,
    stale_after,
    sync_status_rows,
)
from orchestration.monitoring.warehouse_writes import LoadOutcome, in_time_zone, last_load_outcomes
from orchestration.warehouse import database

FRESH_CHECK = "district_fresh"
LOAD_CHECK = "last_load_ok"
CHECKS_JOB = "evaluate_district_checks"
# Marks the sensor's check runs (the sync status is not refreshed after them: nothing was written).
CHECK_RUN_TAG = "attendance/district_checks"


@dataclass(frozen=True)
class Freshness:
    """One district's verdict for one layer ("landing" or "state")."""

    district: str
    layer: str
    stale: bool
    age: dt.timedelta | None  # None: never loaded / never built
    data_as_of: dt.datetime | None

    @property
    def key(self) -> str:
        return f"{self.layer}/{self.district}"


def freshness(rows: Sequence[Mapping[str, Any]]) -> list[Freshness]:
    """Per current district (rows of sync_status_rows) the landing and the state verdict."""
    limit = stale_after()
    verdicts = []
    for row in rows:
        if not row.get("in_registry", True):
            continue
        now = dt.datetime.now(dt.UTC)
        load_age = now - row["last_load"] if row["last_load"] else None
        verdicts.append(Freshness(row["district"], "landing", load_age is None or load_age > limit, load_age,
                                  row["last_load"]))
        verdicts.append(Freshness(row["district"], "state", bool(row["stale"]), row["stale_for"],
                                  row["state_data_as_of"]))
    return verdicts


def fresh_evaluation(key: AssetKey, verdict: Freshness, time_zone_text: str) -> AssetCheckEvaluation:
    """The district_fresh evaluation of one asset partition: warn when stale, fail when never synced."""
    hours = round(verdict.age.total_seconds() / 3600, 1) if verdict.age is not None else None
    limit = round(stale_after().total_seconds() / 3600, 1)
    what = "last load" if verdict.layer == "landing" else "state data as of"
    return AssetCheckEvaluation(
        asset_key=key, check_name=FRESH_CHECK, partition=verdict.district, passed=not verdict.stale,
        severity=AssetCheckSeverity.ERROR if verdict.age is None else AssetCheckSeverity.WARN,
        description=(f"never {'loaded' if verdict.layer == 'landing' else 'built'}" if verdict.age is None
                     else f"{verdict.district}: {what} {hours} h ago (stale after {limit} h)"),
        metadata={"age_hours": MetadataValue.float(hours if hours is not None else -1.0),
                  "stale_after_hours": MetadataValue.float(limit),
                  what.replace(" ", "_"): MetadataValue.text(time_zone_text)})


def load_evaluation(key: AssetKey, district: str, outcome: LoadOutcome, zone: str) -> AssetCheckEvaluation:
    """The last_load_ok evaluation of one landing partition: fails with the error of a failed last load."""
    metadata = {"at": MetadataValue.text(in_time_zone(outcome.at, zone)),
                "origin": MetadataValue.text(outcome.origin or "unknown")}
    if outcome.error:
        metadata["error"] = MetadataValue.text(outcome.error)
    return AssetCheckEvaluation(
        asset_key=key, check_name=LOAD_CHECK, partition=district, passed=outcome.ok, severity=AssetCheckSeverity.ERROR,
        description=None if outcome.ok else f"load of {district} failed, landing unchanged: {outcome.error}",
        metadata=metadata)


def build_district_checks(state_keys: Sequence[AssetKey], landing_keys: Sequence[AssetKey],
                          partitions: PartitionsDefinition) -> AssetChecksDefinition:
    fresh = (f"The district's data is younger than ${STALE_AFTER_VARIABLE} hours (default "
             f"{DEFAULT_STALE_AFTER_HOURS:g}); for state tables the landing data they were built from.")
    specs = [AssetCheckSpec(FRESH_CHECK, asset=key, partitions_def=partitions, description=fresh)
             for key in [*landing_keys, *state_keys]]
    specs += [AssetCheckSpec(LOAD_CHECK, asset=key, partitions_def=partitions,
                             description="The district's last landing load committed (a failed load leaves "
                             "its landing as it was).") for key in landing_keys]
    layer_of = {key: "landing" for key in landing_keys} | {key: "state" for key in state_keys}

    @multi_asset_check(specs=specs, name="district_checks", can_subset=True)
    def district_checks(context: AssetCheckExecutionContext) -> Iterator[AssetCheckEvaluation]:
        # Evaluations name their partition: a run over a range of districts (the UI's single-run
        # backfill) evaluates each of them, which an AssetCheckResult (one step partition) cannot.
        districts = run_districts(context.run.tags, partitions)
        verdicts = {(v.layer, v.district): v for v in freshness(sync_status_rows())}
        with database.connect(autocommit=True) as conn:
            outcomes = last_load_outcomes(conn)
        zone = state_time_zone()
        for check_key in sorted(context.selected_asset_check_keys, key=AssetCheckKey.to_user_string):
            for district in districts:
                verdict = verdicts.get((layer_of[check_key.asset_key], district))
                if check_key.name == FRESH_CHECK and verdict is not None:
                    yield fresh_evaluation(check_key.asset_key, verdict, in_time_zone(verdict.data_as_of, zone))
                elif check_key.name == LOAD_CHECK and district in outcomes:
                    yield load_evaluation(check_key.asset_key, district, outcomes[district], zone)

    return district_checks


def run_districts(tags: Mapping[str, str], partitions: PartitionsDefinition) -> list[str]:
    """The districts of a run: its partition, its partition range, else every district."""
    if PARTITION_NAME_TAG in tags:
        return [tags[PARTITION_NAME_TAG]]
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        return list(partitions.get_partition_keys_in_range(PartitionKeyRange(
            tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG])))
    return list(partitions.get_partition_keys())


def district_checks_job(checks: AssetChecksDefinition) -> UnresolvedAssetJobDefinition:
    """The per-district checks alone, run by partition (the warehouse sensor's check runs)."""
    return define_asset_job(CHECKS_JOB, selection=AssetSelection.checks(*checks.check_keys),
                            partitions_def=next(iter(checks.check_specs)).partitions_def,
                            description="Evaluate the per-district checks (district_fresh, last_load_ok) of a "
                            "district.")
