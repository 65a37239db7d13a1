"""The warehouse sensor: whatever path wrote the data, the Dagster UI shows it.

Every landing load and model build records its origin (orchestration/warehouse/run_origin.py). Every 30
seconds this sensor reads what was written since its cursor (orchestration/monitoring/warehouse_writes.py)
and reports, as runless events on the district partitions:

- a materialization of each built state model (state/<model>), report (reports/<model>) and loaded
  landing table (landing/<table>), with rows, landing batch, as-of date, when (in the state's time zone)
  and the origin; writes of a Dagster run are skipped, the run reported them already;
- an observation of a failed load on its landing partitions;
- a run of the per-partition checks (district_checks.py: `district_fresh`, `last_load_ok`) for each district
  whose verdict changed, and for every district on the first tick. A run, not runless evaluations: Dagster
  1.13 stores one runless evaluation per check and partition only (its unique index on run id and
  partition refuses the second), while evaluations made in runs are kept one per run;
- `monitoring/sync_status` with its check whenever the code location starts (the daemon's first tick)
  and whenever a write outside Dagster or a changed verdict changed it. After a Dagster run the
  `sync_status_after_runs` sensor refreshes it instead, so one change refreshes it once.

The first tick without a cursor reports the current state of every partition once.
"""

# No `from __future__ import annotations`: Dagster reads the sensor signature's types at runtime.
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.storage.tags import PARTITION_NAME_TAG

from orchestration.dagster_defs.dbt_assets import is_district_model, model_nodes, model_table, translator
from orchestration.dagster_defs.district_checks import CHECK_RUN_TAG, FRESH_CHECK, LOAD_CHECK, Freshness, freshness
from orchestration.dagster_defs.landing_assets import landing_key
from orchestration.dagster_defs.sync_status import SYNC_STATUS_KEY, districts_fresh_verdict, sync_status_metadata
from orchestration.dbt.runner import state_time_zone
from orchestration.districts.contract import TABLES
from orchestration.monitoring.report_headlines import report_headline_metadata
from orchestration.monitoring.sync_status import sync_status_rows
from orchestration.monitoring.warehouse_writes import (
    LoadFailure,
    ModelBuild,
    TableLoad,
    WritePosition,
    district_row_counts,
    in_time_zone,
    last_failure_ids,
    last_load_outcomes,
    new_load_failures,
    new_model_builds,
    new_table_loads,
    table_row_count,
)
from orchestration.warehouse import database
from orchestration.warehouse.run_origin import is_dagster_run

SENSOR_NAME = "warehouse_writes"
INTERVAL_SECONDS = 30
AssetEvent = AssetMaterialization | AssetObservation | AssetCheckEvaluation


@dataclass(frozen=True)
class ModelTarget:
    key: AssetKey
    schema: str
    table: str
    by_district: bool


@dataclass(frozen=True)
class SensorTargets:
    """What the sensor may report on: only assets and checks of the definitions it belongs to."""

    models: Mapping[str, ModelTarget]  # dbt model name -> its asset
    landing: Mapping[str, AssetKey]  # district table -> its landing asset
    checks: frozenset[AssetCheckKey]
    sync_status: bool

    def has_check(self, key: AssetKey, name: str) -> bool:
        return AssetCheckKey(key, name) in self.checks


def sensor_targets(asset_keys: set[AssetKey], check_keys: set[AssetCheckKey]) -> SensorTargets:
    """The targets for definitions holding `asset_keys`: a model not in the manifest, or whose asset is
    not defined, is never reported."""
    dbt_translator = translator()
    models = {}
    for name, node in model_nodes().items():
        table = model_table(node)
        key = dbt_translator.get_asset_key(node)
        if key in asset_keys and table.materialized not in ("view", "ephemeral"):
            models[name] = ModelTarget(key, table.schema, table.name, is_district_model(node))
    landing = {spec.name: landing_key(spec.name) for spec in TABLES if landing_key(spec.name) in asset_keys}
    return SensorTargets(models, landing, frozenset(check_keys), SYNC_STATUS_KEY in asset_keys)


@dataclass
class _Tick:
    """One evaluation: the events so far and what they touched."""

    targets: SensorTargets
    position: WritePosition
    zone: str
    events: list[AssetEvent] = field(default_factory=list)
    by_dagster: set[str] = field(default_factory=set)  # districts a Dagster run wrote
    changed_outside_dagster: bool = False
    checks: dict[str, set[AssetCheckKey]] = field(default_factory=dict)  # district -> checks to evaluate

    def evaluate(self, district: str, keys: Sequence[AssetKey], check: str) -> None:
        wanted = {AssetCheckKey(key, check) for key in keys} & self.targets.checks
        if wanted:
            self.checks.setdefault(district, set()).update(wanted)


def report_writes(targets: SensorTargets, position: WritePosition, *,
                  refresh_status: bool) -> tuple[list[AssetEvent], dict[str, set[AssetCheckKey]], WritePosition]:
    """The events for everything written since `position`, the checks to evaluate per district, and the
    position after them.

    `refresh_status`: materialize sync_status even when nothing changed (the code location just started).
    """
    first = position.is_first
    tick = _Tick(targets, position, state_time_zone())
    with database.connect(autocommit=True) as conn:
        _report_builds(conn, tick, new_model_builds(conn, position))
        _report_loads(tick, new_table_loads(conn, position))
        _report_failures(tick, new_load_failures(conn, position))
        if first:
            # Older failures stay unreported: the first report is the current state.
            position.failures.update(last_failure_ids(conn))
        _report_load_outcomes(conn, tick, first)
    rows = sync_status_rows()
    verdict_changed = _report_freshness(tick, freshness(rows), first)
    if targets.sync_status and (refresh_status or first or tick.changed_outside_dagster or verdict_changed):
        tick.events.append(AssetMaterialization(SYNC_STATUS_KEY, metadata=sync_status_metadata(rows)))
        tick.events.append(districts_fresh_verdict(rows))
    position.started = True
    return tick.events, tick.checks, position


def _text(value: Any) -> MetadataValue:
    return MetadataValue.text(str(value) if value is not None else "-")


def _build_metadata(build: ModelBuild, rows: int | None, zone: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"built_at": _text(in_time_zone(build.built_at, zone)), "origin": _text(build.origin)}
    if rows is not None:
        metadata["dagster/row_count"] = MetadataValue.int(rows)
        if build.district:
            metadata["district_rows"] = MetadataValue.int(rows)
    if build.landing_batch_id is not None:
        metadata["landing_batch"] = MetadataValue.int(build.landing_batch_id)
    if build.as_of_date is not None:
        metadata["as_of_date"] = _text(build.as_of_date.isoformat())
    return metadata


def _report_builds(conn: psycopg.Connection, tick: _Tick, builds: Sequence[ModelBuild]) -> None:
    reported: dict[str, list[ModelBuild]] = {}
    for build in builds:
        tick.position.builds[build.position_key] = build.build_seq
        if is_dagster_run(build.origin):
            if build.district:
                tick.by_dagster.add(build.district)
            continue
        if build.model in tick.targets.models:
            reported.setdefault(build.model, []).append(build)
    # The reports' headline figures, as a Dagster run records them (numeric: plotted over materializations).
    headlines = report_headline_metadata(conn) if any(
        not tick.targets.models[model].by_district for model in reported) else {}
    for model, model_builds in reported.items():
        target = tick.targets.models[model]
        if target.by_district:
            counts = district_row_counts(conn, target.schema, target.table, [b.district or "" for b in model_builds])
        else:
            counts = {"": table_row_count(conn, target.schema, target.table)}
        for build in model_builds:
            rows = counts.get(build.district or "")
            metadata = _build_metadata(build, rows, tick.zone)
            if not target.by_district:
                metadata.update(headlines)
            tick.events.append(AssetMaterialization(
                target.key, partition=build.district if target.by_district else None, metadata=metadata))
            tick.changed_outside_dagster = True


def _load_metadata(load: TableLoad, zone: str) -> dict[str, Any]:
    return {"dagster/row_count": MetadataValue.int(load.live_rows), "district_rows": MetadataValue.int(load.live_rows),
            "batch_id": MetadataValue.int(load.batch_id), "landing_batch": MetadataValue.int(load.batch_id),
            "inserted": MetadataValue.int(load.inserted), "updated": MetadataValue.int(load.updated),
            "deleted": MetadataValue.int(load.deleted), "unchanged": MetadataValue.int(load.unchanged),
            "loaded_at": _text(in_time_zone(load.loaded_at, zone)), "origin": _text(load.origin)}


def _report_loads(tick: _Tick, loads: Sequence[TableLoad]) -> None:
    for load in loads:
        tick.position.loads[load.district] = max(tick.position.loads.get(load.district, 0), load.batch_id)
        if is_dagster_run(load.origin):
            tick.by_dagster.add(load.district)
            continue
        key = tick.targets.landing.get(load.table)
        if key is not None:
            tick.events.append(AssetMaterialization(key, partition=load.district,
                                                    metadata=_load_metadata(load, tick.zone)))
            tick.changed_outside_dagster = True


def _report_failures(tick: _Tick, failures: Sequence[LoadFailure]) -> None:
    for failure in failures:
        tick.position.failures[failure.district] = failure.failure_id
        if is_dagster_run(failure.origin):
            continue  # the run's failed step shows it
        metadata = {"load_failed": _text(failure.error), "failed_at": _text(in_time_zone(failure.failed_at, tick.zone)),
                    "origin": _text(failure.origin)}
        tick.events += [AssetObservation(key, partition=failure.district, metadata=metadata)
                        for key in tick.targets.landing.values()]
        tick.changed_outside_dagster = True


def _report_load_outcomes(conn: psycopg.Connection, tick: _Tick, first: bool) -> None:
    """last_load_ok of each landing partition whose district's last attempt changed from ok to failed or back."""
    for district, outcome in last_load_outcomes(conn).items():
        if not first and tick.position.load_ok.get(district) == outcome.ok:
            continue
        tick.position.load_ok[district] = outcome.ok
        tick.evaluate(district, list(tick.targets.landing.values()), LOAD_CHECK)


def _layer_keys(targets: SensorTargets, layer: str) -> list[AssetKey]:
    if layer == "landing":
        return list(targets.landing.values())
    return [target.key for target in targets.models.values() if target.by_district]


def _report_freshness(tick: _Tick, verdicts: Sequence[Freshness], first: bool) -> bool:
    """district_fresh of every partition whose verdict changed (all on the first tick); whether a verdict
    changed for a district no Dagster run wrote (the after-run sensor refreshes sync_status for those)."""
    changed_outside_dagster = False
    for verdict in verdicts:
        changed = tick.position.stale.get(verdict.key) != verdict.stale
        if not (first or changed):
            continue
        tick.position.stale[verdict.key] = verdict.stale
        changed_outside_dagster |= changed and not first and verdict.district not in tick.by_dagster
        tick.evaluate(verdict.district, _layer_keys(tick.targets, verdict.layer), FRESH_CHECK)
    return changed_outside_dagster


def check_run_requests(checks: Mapping[str, set[AssetCheckKey]]) -> list[RunRequest]:
    """One run of the district checks per district, for the checks whose verdict changed."""
    # The district as the partition tag, not as partition_key: Dagster derives a job's partitions from its
    # assets, and this job holds checks only.
    return [RunRequest(asset_check_keys=sorted(keys, key=AssetCheckKey.to_user_string),
                       tags={CHECK_RUN_TAG: "true", PARTITION_NAME_TAG: district})
            for district, keys in sorted(checks.items())]


def build_warehouse_sensor(targets: SensorTargets, checks_job: UnresolvedAssetJobDefinition) -> SensorDefinition:
    # sync_status is refreshed on the first tick of each process that serves this sensor: the daemon
    # (re)started, or the definitions were reloaded.
    started = {"refreshed": False}

    @sensor(name=SENSOR_NAME, job=checks_job, minimum_interval_seconds=INTERVAL_SECONDS,
            default_status=DefaultSensorStatus.RUNNING,
            description="Reports loads and builds made outside Dagster (CLI, plain dbt) as materializations of "
            "their district partitions, per district freshness checks, and the sync status.")
    def warehouse_writes(context: SensorEvaluationContext) -> SensorResult:
        position = WritePosition.from_json(context.cursor)
        try:
            events, checks, position = report_writes(targets, position, refresh_status=not started["refreshed"])
        except psycopg.OperationalError as error:
            return SensorResult(skip_reason=f"the state database cannot be reached: {error}".strip(),
                                cursor=context.cursor)
        started["refreshed"] = True
        return SensorResult(asset_events=events, run_requests=check_run_requests(checks), cursor=position.to_json())

    return warehouse_writes
