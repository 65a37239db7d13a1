"""Dagster asset graph and in-process partition runs against the embedded PostgreSQL.

Four small districts (D01-D04) are loaded and built once; each test then changes district data and
materializes a subset of districts the way the UI does (one run over a partition range), checking which
districts' landing and state rows changed. Fixtures here are shared with the other test_dagster_* modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, Definitions, ExecuteInProcessResult
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from orchestration.districts.registry import District, DistrictSource, write_registry
from orchestration.warehouse import database
from tests.conftest import district_conn, unique_name
from tests.district_samples import create_district_database

CODES = ("D01", "D02", "D03", "D04")
PERSON = AssetKey(["state", "person"])
ATTENDANCE = AssetKey(["state", "attendance"])


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


def _district_assets() -> AssetSelection:
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
                result = env.materialize(_district_assets(), CODES[0], CODES[-1])
                assert result.success, _failure(result)
                yield env
        finally:
            for name in [*names.values(), state]:
                database.drop_database(name, settings)


@pytest.fixture(scope="module")
def dagster_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterEnv]:
    with dagster_env_for(tmp_path_factory.mktemp("dagster_assets")) as env:
        yield env


def _failure(result: ExecuteInProcessResult) -> str:
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


def materializations(result: ExecuteInProcessResult) -> list[Any]:
    return [e.event_specific_data.materialization for e in result.all_events  # type: ignore[union-attr]
            if e.is_step_materialization]


def materialized_partitions(result: ExecuteInProcessResult, key: AssetKey) -> set[str]:
    return {m.partition for m in materializations(result) if m.asset_key == key}


def test_graph_has_landing_models_and_checks(dagster_env: DagsterEnv) -> None:
    graph = dagster_env.defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert AssetKey(["landing", "attendance"]) in keys
    assert PERSON in keys
    # Lineage: the state model reads the landing table (its staging model is ephemeral, no asset of its own).
    assert AssetKey(["landing", "person"]) in graph.get(PERSON).parent_keys
    assert not any(key.path[0] == "staging" for key in keys)
    # Every district-level asset is partitioned by the registry's districts.
    assert graph.get(PERSON).partitions_def.get_partition_keys() == list(CODES)  # type: ignore[union-attr]
    assert graph.get(AssetKey(["landing", "person"])).partitions_def.get_partition_keys() == list(CODES)  # type: ignore[union-attr]
    assert any(check.asset_key == PERSON for check in graph.asset_check_keys), "dbt tests become asset checks"


def test_two_districts_in_one_run_change_only_those(dagster_env: DagsterEnv) -> None:
    before_built, before_batches = built_at("person"), landing_batches()
    rename_people(dagster_env, CODES, "-v2")
    # "Materialize with upstream" of state/person for D01 and D02: one run.
    result = dagster_env.materialize(AssetSelection.assets(PERSON).upstream(), "D01", "D02")
    assert result.success, _failure(result)
    assert result.dagster_run.tags[ASSET_PARTITION_RANGE_START_TAG] == "D01"
    assert materialized_partitions(result, PERSON) == {"D01", "D02"}
    after_built, after_batches = built_at("person"), landing_batches()
    for code in ("D01", "D02"):
        assert all(name.endswith("-v2") for name in last_names(code)), f"{code} landing reloaded and rebuilt"
        assert after_built[code] > before_built[code]
        assert after_batches[code] > before_batches[code]
    for code in ("D03", "D04"):
        assert not any(name.endswith("-v2") for name in last_names(code)), f"{code} untouched"
        assert after_built[code] == before_built[code]
        assert after_batches[code] == before_batches[code]


def test_without_upstream_rebuilds_from_current_landing(dagster_env: DagsterEnv) -> None:
    before_batches = landing_batches()
    rename_people(dagster_env, ["D03"], "-v3")
    result = dagster_env.materialize(AssetSelection.assets(PERSON), "D03", "D03")
    assert result.success, _failure(result)
    assert landing_batches() == before_batches, "no landing load without upstream"
    assert not any(name.endswith("-v3") for name in last_names("D03"))


def test_materialization_records_rows_per_district(dagster_env: DagsterEnv) -> None:
    result = dagster_env.materialize(AssetSelection.assets(PERSON).upstream(), "D02", "D03")
    assert result.success, _failure(result)
    by_partition = {(m.asset_key, m.partition): m.metadata for m in materializations(result)}
    assert by_partition[(PERSON, "D02")]["dagster/row_count"].value == 3
    assert by_partition[(PERSON, "D03")]["district_rows"].value == 3
    landing = by_partition[(AssetKey(["landing", "person"]), "D03")]
    assert landing["dagster/row_count"].value == 3
    assert sum(landing[kind].value for kind in ("inserted", "updated", "unchanged")) == 3
