"""The landing loads as assets: one asset per landing table, partitioned by district.

A district's load copies all its tables in one transaction (orchestration/landing/load.py), so one
multi-asset computes them together; its asset keys are the keys dagster-dbt gives the dbt sources of
schema `landing`, which makes the landing tables the upstream of the state models. Materializing a
subset of the tables (e.g. "materialize with upstream" of a model that reads only some of them) still
loads every table of the selected districts, and the tables outside the selection are recorded as
materialized too, because they were.

Each table's partition records what the load did to it for that district (inserted, updated, deleted,
unchanged), its live row count and the load's batch id. A district whose load fails leaves its landing
as it was; the step then fails after recording the districts that did load.
"""

# No `from __future__ import annotations`: Dagster reads the op signatures' types at runtime.
from collections.abc import Iterator, Sequence
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    multi_asset,
)
from pydantic import Field

from orchestration.dagster_defs.catalog import LANDING_GROUP, source_key
from orchestration.dagster_defs.dbt_assets import WRITER_POOL
from orchestration.districts.admin import sync_registry_file
from orchestration.districts.contract import TABLES
from orchestration.districts.registry import select_districts
from orchestration.landing.load import DistrictLoadResult, StateDatabaseUnavailable, load_districts
from orchestration.warehouse.run_origin import dagster_run_origin
from orchestration.warehouse.writer_lock import state_writer_lock

LANDING_ASSET_NAME = "landing_load"


def landing_tables() -> list[str]:
    """The district tables the loader writes, one asset each. Its bookkeeping (load batches, logs, the
    districts) is presented apart (catalog.py)."""
    return [spec.name for spec in TABLES]


def landing_key(table: str) -> AssetKey:
    return source_key("landing", table)


def _describe(table: str) -> str:
    return (f"landing.{table}: each district's current `{table}` rows as its District Edition last delivered "
            "them, one partition per district; the state tables are built from them.")


def district_table_metadata(results: Sequence[DistrictLoadResult], table: str) -> dict[str, dict[str, Any]]:
    """Per loaded district: what its load did to `table`, and its live rows after it (every source row
    is inserted, updated or unchanged; deleted ones are only flagged)."""
    metadata: dict[str, dict[str, Any]] = {}
    for result in results:
        entry: dict[str, Any] = {"batch_id": MetadataValue.int(result.batch_id or 0),
                                 "load_seconds": MetadataValue.float(round(result.duration_s, 2))}
        stats = next((t for t in result.tables if t.table == table), None)
        if stats is not None:
            live = stats.inserted + stats.updated + stats.unchanged
            entry.update({"inserted": MetadataValue.int(stats.inserted), "updated": MetadataValue.int(stats.updated),
                          "deleted": MetadataValue.int(stats.deleted),
                          "unchanged": MetadataValue.int(stats.unchanged),
                          "district_rows": MetadataValue.int(live), "dagster/row_count": MetadataValue.int(live)})
        metadata[result.district_code] = entry
    return metadata


class LandingLoadConfig(Config):
    allow_mass_delete: bool = Field(default=False, description=(
        "Let the load flag more than the limit of a table's live rows deleted (refused otherwise); "
        "every such deletion is recorded in landing.mass_delete_override."))


def load_landing(codes: Sequence[str], *, holder: str, log: Any,
                 allow_mass_delete: str | None = None, run_id: str | None = None) -> list[DistrictLoadResult]:
    """Load the districts (under the writer lock) and log one line per district.

    `allow_mass_delete` names the run's explicit override of the mass-delete guard (None: the limits apply);
    `run_id` is the Dagster run, recorded as the loads' origin.
    """
    districts = select_districts(list(codes))
    try:
        with state_writer_lock(holder, log=log.info):
            sync_registry_file()  # which districts are current, from the whole registry file
            results = load_districts(districts, allow_mass_delete=allow_mass_delete,
                                     origin=dagster_run_origin(run_id) if run_id else None)
    except StateDatabaseUnavailable as error:
        raise Failure(description=str(error)) from None
    for result in results:
        (log.info if result.ok else log.error)(result.describe())
    return results


def failure_for(results: Sequence[DistrictLoadResult]) -> Failure | None:
    failed = [r for r in results if not r.ok]
    if not failed:
        return None
    return Failure(
        description=f"landing load failed for {len(failed)} district(s); their landing is unchanged: "
        + "; ".join(f"{r.district_code}: {r.error}" for r in failed),
        metadata={"failed_districts": MetadataValue.json({r.district_code: r.error for r in failed})})


def partition_materializations(results: Sequence[DistrictLoadResult],
                               tables: Sequence[str]) -> Iterator[AssetMaterialization]:
    """One materialization per table and successfully loaded district (used by op jobs and on failure)."""
    loaded = [r for r in results if r.ok]
    for table in tables:
        for code, metadata in district_table_metadata(loaded, table).items():
            yield AssetMaterialization(asset_key=landing_key(table), partition=code, metadata=metadata)


def _holder(context: AssetExecutionContext) -> str:
    return f"run {context.run.run_id[:8]} step {context.op_execution_context.op.name}"


def build_landing_assets(partitions: PartitionsDefinition) -> AssetsDefinition:
    tables = landing_tables()
    specs = [AssetSpec(landing_key(t), group_name=LANDING_GROUP, description=_describe(t), kinds={"postgres"},
                       skippable=True) for t in tables]

    @multi_asset(specs=specs, name=LANDING_ASSET_NAME, partitions_def=partitions, can_subset=True,
                 backfill_policy=BackfillPolicy.single_run(), pool=WRITER_POOL)
    def landing_load(context: AssetExecutionContext,
                     config: LandingLoadConfig) -> Iterator[MaterializeResult | AssetMaterialization]:
        codes = sorted(context.partition_keys)
        allowed_by = f"{_holder(context)} config allow_mass_delete" if config.allow_mass_delete else None
        results = load_landing(codes, holder=_holder(context), log=context.log, allow_mass_delete=allowed_by,
                               run_id=context.run.run_id)
        failure = failure_for(results)
        if failure is not None:
            yield from partition_materializations(results, tables)
            raise failure
        for table in tables:
            key = landing_key(table)
            per_district = district_table_metadata(results, table)
            if key not in context.selected_asset_keys:
                for code, metadata in per_district.items():
                    yield AssetMaterialization(asset_key=key, partition=code, metadata=metadata)
                continue
            for code, metadata in per_district.items():
                context.add_asset_metadata(metadata, asset_key=key, partition_key=code)
            yield MaterializeResult(asset_key=key, metadata={"districts": MetadataValue.text(", ".join(codes))})

    return landing_load
