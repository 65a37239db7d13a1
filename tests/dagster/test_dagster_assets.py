"""Dagster asset graph and in-process partition runs against the embedded PostgreSQL.

Four small districts (D01-D04) are loaded and built once; each test then changes district data and
materializes a subset of districts the way the UI does (one run over a partition range), checking which
districts' landing and state rows changed. The environment is tests/support/dagster_env.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dagster import AssetKey, AssetSelection, ExecuteInProcessResult
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG

from orchestration.warehouse import database
from tests.support.dagster_env import (
    CODES,
    DagsterEnv,
    built_at,
    dagster_env_for,
    landing_batches,
    last_names,
    rename_people,
    step_failures,
)

PERSON = AssetKey(["state", "person"])
ATTENDANCE = AssetKey(["state", "attendance"])


@pytest.fixture(scope="module")
def dagster_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterEnv]:
    with dagster_env_for(tmp_path_factory.mktemp("dagster_assets")) as env:
        yield env


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
    assert result.success, step_failures(result)
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
    assert result.success, step_failures(result)
    assert landing_batches() == before_batches, "no landing load without upstream"
    assert not any(name.endswith("-v3") for name in last_names("D03"))


def test_materialization_records_rows_per_district(dagster_env: DagsterEnv) -> None:
    result = dagster_env.materialize(AssetSelection.assets(PERSON).upstream(), "D02", "D03")
    assert result.success, step_failures(result)
    by_partition = {(m.asset_key, m.partition): m.metadata for m in materializations(result)}
    assert by_partition[(PERSON, "D02")]["dagster/row_count"].value == 3
    assert by_partition[(PERSON, "D03")]["district_rows"].value == 3
    landing = by_partition[(AssetKey(["landing", "person"]), "D03")]
    assert landing["dagster/row_count"].value == 3
    assert sum(landing[kind].value for kind in ("inserted", "updated", "unchanged")) == 3


def test_catalog_reads_districts_landing_state_reports(dagster_env: DagsterEnv) -> None:
    from orchestration.districts.contract import TABLES

    graph = dagster_env.defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())
    assert set(groups) == {"districts", "landing", "state", "reports", "monitoring", "bookkeeping"}
    # Landing holds the district tables of the contract and nothing else.
    assert groups["landing"] == {f"landing/{spec.name}" for spec in TABLES}
    # landing.district is presented as the districts, and state.district is built from it.
    registry = AssetKey(["districts", "registry"])
    assert groups["districts"] == {"districts/registry"}
    assert registry in graph.get(AssetKey(["state", "district"])).parent_keys
    # The bookkeeping is apart: no district partitions, nothing to materialize.
    assert {"bookkeeping/load_batch", "bookkeeping/load_log", "bookkeeping/load_failure",
            "bookkeeping/superseded_row", "bookkeeping/model_build"} <= groups["bookkeeping"]
    for name in groups["bookkeeping"] | groups["districts"]:
        node = graph.get(AssetKey.from_user_string(name))
        assert node.partitions_def is None and not node.is_materializable, name
        assert node.description and node.description.strip(), name


def test_reports_carry_their_headline_figures(dagster_env: DagsterEnv) -> None:
    job = dagster_env.defs.resolve_implicit_global_asset_job_def()
    keys = list(AssetSelection.groups("reports").resolve(dagster_env.defs.resolve_asset_graph()))
    result = job.execute_in_process(instance=dagster_env.instance, asset_selection=keys, raise_on_error=False)
    assert result.success, step_failures(result)
    report = next(m for m in materializations(result) if m.asset_key == AssetKey(["reports", "school_attendance"]))
    figures = {label: value.value for label, value in report.metadata.items()}
    # Worked out here from the report tables, not with the code under test.
    with database.connect(autocommit=True) as conn:
        year = conn.execute("select max(end_year) from reports.student_attendance").fetchone()[0]
        rows = conn.execute("select enrolled_days, chronically_absent from reports.statewide_student_attendance "
                            "where end_year = %s", (year,)).fetchall()
        ada = dict(conn.execute("select district_code, sum(ada) from reports.school_attendance where end_year = %s "
                                "group by 1", (year,)).fetchall())
    # The figures themselves are checked on hand-computed reports (tests/dbt/test_dbt_reports.py); here,
    # that a Dagster materialization of a report carries them, as numbers (plotted over materializations).
    counted = [absent for days, absent in rows if days >= 10]
    assert figures["school year"] == year
    if counted:
        assert figures["chronic absence % (statewide)"] == pytest.approx(100 * sum(counted) / len(counted), abs=0.05)
    else:  # no student has the 10 enrolled days the rate needs: no figure rather than a made-up 0
        assert "chronic absence % (statewide)" not in figures
    for code in CODES:
        assert isinstance(figures[f"ADA ({code})"], float)
        assert figures[f"ADA ({code})"] == pytest.approx(float(ada[code]), abs=0.05)
    assert figures["ADA (statewide)"] == pytest.approx(sum(float(v) for v in ada.values()), abs=0.1)
