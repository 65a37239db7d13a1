"""The warehouse sensor: loads and builds made outside Dagster show in the UI, per district partition.

Drives the sensor the way the daemon does (build_sensor_context, then every returned event reported to the
instance) against the real warehouse of tests/support/dagster_env.py, and reads the results back from the
Dagster instance. The tests form one story in module order, each tick continuing from the saved cursor:
CLI load and build, first tick, quiet tick, plain dbt of one district, a Dagster run, a failed load,
staleness.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetRecordsFilter,
    AssetSelection,
    build_sensor_context,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.tags import PARTITION_NAME_TAG

from orchestration.dagster_defs.district_checks import CHECKS_JOB, FRESH_CHECK, LOAD_CHECK
from orchestration.dagster_defs.sync_status import SYNC_STATUS_KEY
from orchestration.dagster_defs.warehouse_sensor import SENSOR_NAME
from orchestration.dbt.runner import dbt_environment
from orchestration.districts.contract import TABLES
from orchestration.settings import PROJECT_ROOT
from orchestration.warehouse import database
from orchestration.warehouse.run_origin import ORIGIN_VARIABLE
from tests.support.dagster_env import CODES, DagsterEnv, dagster_env_for, step_failures
from tests.support.warehouse import district_conn

CLI = Path(sys.executable).parent / "attendance-sync"
AGGREGATION = AssetKey(["state", "att_day_aggregation"])
PERSON = AssetKey(["state", "person"])
LANDING_PERSON = AssetKey(["landing", "person"])
LANDING_KEYS = [AssetKey(["landing", spec.name]) for spec in TABLES]


@dataclass
class Story:
    env: DagsterEnv
    cursor: str | None = None
    check_runs: dict[str, set[AssetCheckKey]] = field(default_factory=dict)  # of the last tick, per district

    def tick(self) -> list[Any]:
        """One sensor evaluation as the daemon makes it: events reported to the instance, requested check
        runs executed, cursor saved."""
        sensor = self.env.defs.get_sensor_def(SENSOR_NAME)
        with build_sensor_context(instance=self.env.instance, cursor=self.cursor, definitions=self.env.defs) as context:
            data = sensor.evaluate_tick(context)
        for event in data.asset_events:
            self.env.instance.report_runless_asset_event(event)
        self.check_runs = {}
        job = self.env.defs.resolve_job_def(CHECKS_JOB)
        for request in data.run_requests or []:
            assert request.asset_check_keys
            self.check_runs[request.tags[PARTITION_NAME_TAG]] = set(request.asset_check_keys)
            result = job.get_subset(asset_check_selection=set(request.asset_check_keys)).execute_in_process(
                instance=self.env.instance, tags=request.tags)
            assert result.success
        self.cursor = data.cursor
        return list(data.asset_events)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    with dagster_env_for(tmp_path_factory.mktemp("warehouse_sensor")) as env:
        yield Story(env)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != ORIGIN_VARIABLE}
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=900, check=False,
                          env=environment)


def state_keys(story: Story) -> list[AssetKey]:
    graph = story.env.defs.resolve_asset_graph()
    return sorted((key for key in graph.get_all_asset_keys() if key.path[0] == "state"
                   and graph.get(key).partitions_def is not None), key=AssetKey.to_user_string)


def latest(story: Story, key: AssetKey, partition: str | None) -> AssetMaterialization:
    records = story.env.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1).records
    assert records, f"{key.to_user_string()} {partition}: never materialized"
    materialization = records[0].asset_materialization
    assert materialization is not None
    return materialization


def materialization_count(story: Story, key: AssetKey, partition: str) -> int:
    return len(story.env.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1000).records)


def meta(materialization: AssetMaterialization | AssetObservation, name: str) -> Any:
    return materialization.metadata[name].value


def check_verdict(story: Story, key: AssetKey, check: str, partition: str) -> bool:
    """The latest evaluation of a partitioned check, as the instance holds it."""
    records = story.env.instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(key, check), limit=1, partition_filter=PartitionKeyFilter(key=partition))
    assert records and records[0].event is not None, f"{key.to_user_string()} {check} {partition}: never evaluated"
    evaluation = records[0].event.dagster_event.event_specific_data  # type: ignore[union-attr]
    assert isinstance(evaluation, AssetCheckEvaluation)
    assert evaluation.partition == partition
    return bool(evaluation.passed)


def database_rows(sql_text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with database.connect(autocommit=True) as conn:
        return conn.execute(sql_text, params).fetchall()  # type: ignore[arg-type]


def materialized(events: Sequence[Any]) -> set[tuple[str, str | None]]:
    return {(e.asset_key.to_user_string(), e.partition) for e in events if isinstance(e, AssetMaterialization)}


def test_first_tick_reports_every_partition_written_by_the_cli(story: Story) -> None:
    # The UI side: the definitions with the sensor and the partitioned checks load in Dagster.
    validate = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-m",
                               "orchestration.dagster_defs.definitions"], capture_output=True, text=True,
                              cwd=PROJECT_ROOT, timeout=600, check=False)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "Validation successful" in validate.stdout + validate.stderr

    for args in (("load",), ("build",)):
        result = cli(*args)
        assert result.returncode == 0, result.stdout + result.stderr
    events = story.tick()

    counts = dict(database_rows("select district_code, count(*) from state.att_day_aggregation group by 1"))
    builds = {code: (batch, as_of) for code, batch, as_of in database_rows(
        "select district_code, landing_batch_id, as_of_date from state.model_build "
        "where model_name = 'att_day_aggregation'")}
    for code in CODES:
        aggregation = latest(story, AGGREGATION, code)
        assert meta(aggregation, "origin") == "attendance-sync build"
        assert meta(aggregation, "dagster/row_count") == counts[code]
        assert meta(aggregation, "landing_batch") == builds[code][0]
        assert meta(aggregation, "as_of_date") == builds[code][1].isoformat()
        assert meta(aggregation, "built_at")[:4].isdigit()
        for key in state_keys(story):
            assert meta(latest(story, key, code), "origin") == "attendance-sync build", (key, code)
            assert check_verdict(story, key, FRESH_CHECK, code), (key, code)
        people = database_rows("select count(*) from landing.person where district_code = %s and not _deleted",
                               (code,))[0][0]
        person = latest(story, LANDING_PERSON, code)
        assert (meta(person, "origin"), meta(person, "dagster/row_count")) == ("attendance-sync load", people)
        for key in LANDING_KEYS:
            assert meta(latest(story, key, code), "origin") == "attendance-sync load", (key, code)
            assert check_verdict(story, key, FRESH_CHECK, code) and check_verdict(story, key, LOAD_CHECK, code)
    year = database_rows("select max(end_year) from reports.student_attendance")[0][0]
    for report in ("school_attendance", "student_attendance", "statewide_student_attendance"):
        materialization = latest(story, AssetKey(["reports", report]), None)
        assert meta(materialization, "origin") == "attendance-sync build"
        # The headline figures, as numbers, as a Dagster run of the report records them.
        assert meta(materialization, "school year") == year
        assert all(isinstance(meta(materialization, f"ADA ({code})"), float) for code in CODES)
    assert "| D01 |" in meta(latest(story, SYNC_STATUS_KEY, None), "status")
    expected = {(key.to_user_string(), code) for key in [*state_keys(story), *LANDING_KEYS] for code in CODES}
    assert expected <= materialized(events)

    # Nothing new: the saved cursor reports nothing (no event, no check run, nothing added to the instance).
    before = materialization_count(story, PERSON, "D01")
    assert story.tick() == [] and story.check_runs == {}
    assert materialization_count(story, PERSON, "D01") == before


def test_plain_dbt_build_of_one_district_reports_only_that_partition(story: Story) -> None:
    # dbt started by hand in dbt_project/, as docs/operations.md describes: the PG* settings, no origin.
    environment = {k: v for k, v in dbt_environment().items() if k != ORIGIN_VARIABLE}
    dbt = subprocess.run([str(Path(sys.executable).parent / "dbt"), "build", "--select", "att_day_aggregation",
                          "--vars", "{districts: [D02]}", "--profiles-dir", "../profiles"],
                         cwd=PROJECT_ROOT / "dbt_project", capture_output=True, text=True, timeout=600, check=False,
                         env=environment)
    assert dbt.returncode == 0, dbt.stdout + dbt.stderr
    others = {code: materialization_count(story, AGGREGATION, code) for code in CODES if code != "D02"}
    events = story.tick()
    assert {partition for key, partition in materialized(events) if key != SYNC_STATUS_KEY.to_user_string()} == {
        "D02"}
    assert {key for key, _ in materialized(events)} == {AGGREGATION.to_user_string(), SYNC_STATUS_KEY.to_user_string()}
    origin = meta(latest(story, AGGREGATION, "D02"), "origin")
    assert origin.startswith("dbt invocation ") and len(origin) > len("dbt invocation ")
    assert database_rows("select origin from state.model_build where model_name = 'att_day_aggregation' "
                         "and district_code = 'D02'") == [(origin,)]
    assert {code: materialization_count(story, AGGREGATION, code) for code in others} == others


def test_a_dagster_run_is_not_reported_twice(story: Story) -> None:
    result = story.env.materialize(AssetSelection.assets(PERSON).upstream(), "D03", "D03")
    assert result.success, step_failures(result)
    run_id = result.dagster_run.run_id
    assert database_rows("select origin from state.model_build where model_name = 'person' and district_code = 'D03'"
                         ) == [(f"dagster run {run_id}",)]
    assert database_rows("select origin from landing.load_batch where district_code = 'D03' order by batch_id desc "
                         "limit 1") == [(f"dagster run {run_id}",)]
    before = {key: materialization_count(story, key, "D03") for key in (PERSON, LANDING_PERSON)}
    events = story.tick()
    assert not [e for e in events if isinstance(e, AssetMaterialization | AssetObservation)]
    assert story.check_runs == {}  # its verdicts did not change
    assert {key: materialization_count(story, key, "D03") for key in (PERSON, LANDING_PERSON)} == before
    assert latest(story, PERSON, "D03").metadata.get("origin") is None  # the run's own materialization


def test_a_failed_load_shows_on_its_district_partitions(story: Story) -> None:
    with district_conn(story.env.districts["D04"]) as conn:
        conn.execute("alter table person rename to person_gone")
    try:
        failed = cli("load", "--district", "D04")
    finally:
        with district_conn(story.env.districts["D04"]) as conn:
            conn.execute("alter table person_gone rename to person")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    events = story.tick()
    observed = [e for e in events if isinstance(e, AssetObservation)]
    assert {(e.asset_key, e.partition) for e in observed} == {(key, "D04") for key in LANDING_KEYS}
    assert "person" in meta(observed[0], "load_failed")
    assert meta(observed[0], "origin") == "attendance-sync load"
    assert set(story.check_runs) == {"D04"}
    for code in CODES:
        assert check_verdict(story, LANDING_PERSON, LOAD_CHECK, code) == (code != "D04")
    # A later successful load clears it.
    assert cli("load", "--district", "D04").returncode == 0
    story.tick()
    assert check_verdict(story, LANDING_PERSON, LOAD_CHECK, "D04")
    assert meta(latest(story, LANDING_PERSON, "D04"), "origin") == "attendance-sync load"


def test_staleness_verdicts_per_partition(story: Story, monkeypatch: pytest.MonkeyPatch) -> None:
    story.tick()  # settle
    monkeypatch.setenv("ATTENDANCE_STALE_AFTER_HOURS", "0.00001")
    story.tick()
    assert story.check_runs == {code: {AssetCheckKey(key, FRESH_CHECK) for key in [*state_keys(story), *LANDING_KEYS]}
                                for code in CODES}
    for code in CODES:
        assert not check_verdict(story, AGGREGATION, FRESH_CHECK, code)
        assert not check_verdict(story, LANDING_PERSON, FRESH_CHECK, code)
    assert meta(latest(story, SYNC_STATUS_KEY, None), "stale_districts") == ", ".join(CODES)
    # The verdicts did not change: no new evaluations (the event log is not flooded every tick).
    assert story.tick() == [] and story.check_runs == {}
    monkeypatch.delenv("ATTENDANCE_STALE_AFTER_HOURS")
    story.tick()
    assert set(story.check_runs) == set(CODES)
    assert all(check_verdict(story, AGGREGATION, FRESH_CHECK, code) for code in CODES)
    assert all(check_verdict(story, LANDING_PERSON, FRESH_CHECK, code) for code in CODES)
