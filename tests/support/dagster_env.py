"""The Dagster environment of the Dagster and browser tests: four small districts (D01-D04) in a registry,
a state database and a Dagster instance of their own, every district loaded and built once.

Tests change district data and materialize a subset of districts the way the UI does (one run over a
partition range), then check which districts' landing and state rows changed (`last_names`, `built_at`,
`landing_batches`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetSelection, DagsterInstance, Definitions, ExecuteInProcessResult
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from orchestration.districts.registry import District, DistrictSource, write_registry
from orchestration.warehouse import database
from tests.support.districts import create_district_database
from tests.support.warehouse import district_conn, unique_name

CODES = ("D01", "D02", "D03", "D04")


@dataclass
class DagsterEnv:
    districts: dict[str, District]
    defs: Definitions
    instance: DagsterInstance
    home: Path

    def materialize(self, selection: AssetSelection, first: str, last: str,
                    run_config: dict[str, Any] | None = None) -> ExecuteInProcessResult:
        """One run over the partition range first..last, as the UI launches a single-run backfill."""
        job = self.defs.resolve_implicit_global_asset_job_def()
        keys = list(selection.resolve(self.defs.resolve_asset_graph()))
        return job.execute_in_process(
            instance=self.instance, asset_selection=keys, run_config=run_config or {}, raise_on_error=False,
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last})


def district_assets() -> AssetSelection:
    """Every asset partitioned by district (the sync status and the reports span all districts)."""
    from orchestration.dagster_defs.sync_status import SYNC_STATUS_KEY

    return AssetSelection.all() - AssetSelection.assets(SYNC_STATUS_KEY) - AssetSelection.groups("reports")


@contextlib.contextmanager
def dagster_env_for(tmp_path: Path) -> Iterator[DagsterEnv]:
    """A fresh state database, district databases D01-D04 in a registry, a fresh Dagster instance in
    tmp_path, every district loaded and built once (one run over all four partitions).

    Self-contained (its own environment patch) so that a module can share it across its tests: they
    compare before and after, so earlier tests' changes do not disturb later ones.
    """
    state = unique_name("test_dagster")
    names = {code: unique_name(f"district_{code.lower()}") for code in CODES}
    settings = database.ensure_server()
    with pytest.MonkeyPatch.context() as patch:
        database.ensure_database(state, settings)
        patch.setenv("ATTENDANCE_STATE_DATABASE", state)
        patch.setenv("ATTENDANCE_REGISTRY", str(tmp_path / "districts.yml"))
        patch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        try:
            districts = {}
            for code, name in names.items():
                create_district_database(name)
                districts[code] = District(code=code, name=f"District {code}",
                                           source=DistrictSource("database", database=name))
            write_registry(tmp_path / "districts.yml", list(districts.values()))
            from orchestration.dagster_defs.definitions import build_definitions
            from orchestration.dagster_defs.launch import dagster_home
            from orchestration.warehouse.setup import ensure_warehouse

            with database.connect() as conn, conn.transaction():
                ensure_warehouse(conn)
            home = dagster_home()
            defs = build_definitions()
            with DagsterInstance.get() as instance:
                env = DagsterEnv(districts, defs, instance, home)
                result = env.materialize(district_assets(), CODES[0], CODES[-1])
                assert result.success, step_failures(result)
                yield env
        finally:
            for name in [*names.values(), state]:
                database.drop_database(name, settings)


def step_failures(result: ExecuteInProcessResult) -> str:
    """The error messages of a run's failed steps, for an assertion message."""
    failures = [e for e in result.all_events if e.is_step_failure]
    return "\n".join(str(e.step_failure_data.error.message if e.step_failure_data and e.step_failure_data.error
                         else e.message) for e in failures)


def rename_people(env: DagsterEnv, codes: Sequence[str], suffix: str) -> None:
    for code in codes:
        with district_conn(env.districts[code]) as conn:
            conn.execute("update person set last_name = last_name || %s, modified_date = now()", (suffix,))


def last_names(code: str) -> list[str]:
    with database.connect(autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "select last_name from state.person where district_code = %s order by person_id", (code,))]


def built_at(model: str) -> dict[str, Any]:
    with database.connect(autocommit=True) as conn:
        return dict(conn.execute("select district_code, built_at from state.model_build where model_name = %s",
                                 (model,)).fetchall())


def landing_batches() -> dict[str, int]:
    with database.connect(autocommit=True) as conn:
        return dict(conn.execute("select district_code, max(batch_id) from landing.load_batch group by 1"))
