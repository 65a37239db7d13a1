"""The Dagster definitions: assembled here, built in the other modules of this package.

Load with `dagster dev -m orchestration.dagster_defs.definitions` (what `attendance-sync ui` runs) or
`dagster definitions validate -m orchestration.dagster_defs.definitions`.
"""

from __future__ import annotations

import functools

from dagster import (
    AssetChecksDefinition,
    AssetKey,
    AssetsDefinition,
    Definitions,
    PartitionsDefinition,
    SensorDefinition,
    in_process_executor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from orchestration.dagster_defs.catalog import catalog_specs
from orchestration.dagster_defs.dbt_assets import build_dbt_assets
from orchestration.dagster_defs.district_checks import build_district_checks, district_checks_job
from orchestration.dagster_defs.jobs import asset_jobs, op_jobs
from orchestration.dagster_defs.landing_assets import build_landing_assets, landing_key
from orchestration.dagster_defs.partitions import district_partitions
from orchestration.dagster_defs.project import ensure_manifest, manifest
from orchestration.dagster_defs.resources import dbt_resource
from orchestration.dagster_defs.schedules import build_schedules
from orchestration.dagster_defs.sync_status import (
    build_sync_status_asset,
    build_sync_status_sensor,
    sync_status_job,
)
from orchestration.dagster_defs.warehouse_sensor import build_warehouse_sensor, sensor_targets
from orchestration.districts.contract import TABLES
from orchestration.settings import registry_path


def build_definitions() -> Definitions:
    ensure_manifest()
    partitions = district_partitions()
    jobs = asset_jobs()
    status_job = sync_status_job()
    assets = [build_landing_assets(partitions), *build_dbt_assets(partitions), build_sync_status_asset()]
    checks, checks_job, sensor = warehouse_sensor_and_checks(assets, partitions)
    return Definitions(
        assets=[*catalog_specs(manifest()), *assets],
        asset_checks=[checks],
        jobs=[*jobs, *op_jobs(), status_job, checks_job],
        schedules=build_schedules({j.name: j for j in jobs}, partitions),
        sensors=[build_sync_status_sensor(status_job), sensor],
        resources={"dbt": dbt_resource()},
        # Steps run one after another anyway (landing, then dbt); one process per run saves the
        # start-up of a process per step.
        executor=in_process_executor,
    )


def warehouse_sensor_and_checks(
        assets: list[AssetsDefinition], partitions: PartitionsDefinition,
) -> tuple[AssetChecksDefinition, UnresolvedAssetJobDefinition, SensorDefinition]:
    """The per-district checks of the landing and state assets, and the sensor that evaluates them and
    reports writes made outside Dagster (warehouse_sensor.py)."""
    keys = {key for definition in assets for key in definition.keys}
    landing = [landing_key(spec.name) for spec in TABLES if landing_key(spec.name) in keys]
    state = [key for definition in assets if definition.partitions_def is not None
             for key in definition.keys if key.path[0] == "state"]
    checks = build_district_checks(sorted(state, key=AssetKey.to_user_string), landing, partitions)
    checks_job = district_checks_job(checks)
    return checks, checks_job, build_warehouse_sensor(sensor_targets(keys, set(checks.check_keys)), checks_job)


@functools.cache
def _definitions_for(registry: str, registry_mtime: float, manifest_mtime: float) -> Definitions:
    return build_definitions()


def current_definitions() -> Definitions:
    """The definitions for the registry and manifest as they are now (rebuilt when either changed)."""
    registry = registry_path()
    manifest = ensure_manifest()
    return _definitions_for(str(registry), registry.stat().st_mtime, manifest.stat().st_mtime)


defs = current_definitions()
