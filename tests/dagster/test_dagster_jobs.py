"""Jobs, schedules, the writer lock and sync status, run in-process against the embedded PostgreSQL."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, build_schedule_context
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from psycopg import sql

from orchestration.dagster_defs.dbt_assets import AGGREGATION_MODEL, dbt_build_args, model_nodes
from orchestration.dbt import runner as dbt_runner
from orchestration.districts.registry import District, RegistryError
from orchestration.warehouse import database
from tests.support.dagster_env import (
    CODES,
    DagsterEnv,
    built_at,
    dagster_env_for,
    landing_batches,
    last_names,
    rename_people,
)
from tests.support.warehouse import district_conn


@pytest.fixture(scope="module")
def dagster_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterEnv]:
    with dagster_env_for(tmp_path_factory.mktemp("dagster_jobs")) as env:
        yield env


def test_dbt_build_args(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTENDANCE_TIMEZONE", raising=False)
    # The jobs leave dbt's unit tests to CI (they test the SQL, not the data).
    assert dbt_build_args() == ["build", "--vars", json.dumps({"state_time_zone": "America/Denver"}),
                                "--exclude-resource-type", "unit_test"]
    args = dbt_build_args(select=["+attendance"], districts=["D03", "d01"], as_of_date="2026-09-02",
                          full_refresh=True)
    assert args[:3] == ["build", "--select", "+attendance"] and args[3] == "--vars" and args[5:] == ["--full-refresh",
                                                                                              *dbt_runner.JOB_EXCLUDES]
    # The CLI runner's vars: codes in their one canonical form, sorted; the as-of date checked.
    assert json.loads(args[4]) == {"state_time_zone": "America/Denver", "districts": ["D01", "D03"],
                                   "as_of_date": "2026-09-02"}
    assert args[4] == dbt_runner.vars_argument(["D01", "D03"], date(2026, 9, 2))[1]
    with pytest.raises(ValueError, match="not an ISO date"):
        dbt_build_args(as_of_date="09/02/2026")
    with pytest.raises(RegistryError, match="not a valid district code"):
        dbt_build_args(districts=["D01'; drop table x"])


def test_schedules_request_one_run_over_every_district(dagster_env: DagsterEnv) -> None:
    from orchestration.dagster_defs.jobs import NIGHTLY, WEEKLY_RESYNC

    for name in (WEEKLY_RESYNC, NIGHTLY):
        schedule = dagster_env.defs.resolve_schedule_def(name)
        assert schedule.default_status.value == "RUNNING"
        requests = schedule.evaluate_tick(build_schedule_context(instance=dagster_env.instance)).run_requests
        assert requests is not None and len(requests) == 1
        tags = requests[0].tags
        assert (tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG]) == (CODES[0], CODES[-1])
        job = dagster_env.defs.resolve_job_def(name)
        assert job.partitions_def is not None and job.partitions_def.get_partition_keys() == list(CODES)


def test_weekly_resync_job_runs_every_district_in_one_run(dagster_env: DagsterEnv) -> None:
    from orchestration.dagster_defs.jobs import WEEKLY_RESYNC

    before = built_at("attendance")
    rename_people(dagster_env, CODES, "-weekly")
    schedule = dagster_env.defs.resolve_schedule_def(WEEKLY_RESYNC)
    request = schedule.evaluate_tick(build_schedule_context(instance=dagster_env.instance)).run_requests[0]  # type: ignore[index]
    result = dagster_env.defs.resolve_job_def(WEEKLY_RESYNC).execute_in_process(
        instance=dagster_env.instance, tags=request.tags, raise_on_error=False)
    assert result.success
    after = built_at("attendance")
    for code in CODES:
        assert after[code] > before[code]
        assert all(name.endswith("-weekly") for name in last_names(code))


def _launch_resync(codes: list[str], objects: list[str], check_dependencies: bool) -> int:
    from orchestration.dagster_defs.launch import launch_resync

    return launch_resync(codes, objects, check_dependencies)


def test_resync_job_with_and_without_check_dependencies(dagster_env: DagsterEnv) -> None:
    started = time.time()
    person_before, attendance_before = built_at("person"), built_at("attendance")
    batches_before = landing_batches()
    # Non-contiguous districts still make one run: the op job takes any list.
    assert _launch_resync(["D01", "D04"], ["attendance"], False) == 0
    person_mid, attendance_mid = built_at("person"), built_at("attendance")
    batches_mid = landing_batches()
    for code in ("D01", "D04"):
        assert attendance_mid[code] > attendance_before[code]
        assert person_mid[code] == person_before[code], "no parent rebuilt without Check Dependencies"
        assert batches_mid[code] > batches_before[code], "a resync reloads the district's landing"
    for code in ("D02", "D03"):
        assert attendance_mid[code] == attendance_before[code] and batches_mid[code] == batches_before[code]

    assert _launch_resync(["D04", "D01"], ["attendance"], True) == 0
    person_after = built_at("person")
    for code in ("D01", "D04"):
        assert person_after[code] > person_mid[code], "Check Dependencies rebuilds the parents"
    assert person_after["D02"] == person_before["D02"]

    resyncs = [r.dagster_run for r in dagster_env.instance.get_run_records()
               if r.dagster_run.job_name == "resync_state_data" and r.create_timestamp.timestamp() > started]
    assert len(resyncs) == 2 and all(r.is_success for r in resyncs)
    # Materializations of the op job land on the asset's district partitions.
    records = dagster_env.instance.fetch_materializations(AssetKey(["state", "attendance"]), limit=100).records
    assert {"D01", "D04"} <= {r.partition_key for r in records if r.run_id == resyncs[0].run_id}


def test_resync_refuses_unknown_district_or_object(dagster_env: DagsterEnv, capsys: pytest.CaptureFixture[str]) -> None:
    assert _launch_resync(["D09"], ["attendance"], False) == 2
    assert "D09" in capsys.readouterr().err
    assert _launch_resync(["D01"], ["no_such_model"], False) == 2
    assert "no_such_model" in capsys.readouterr().err


@pytest.mark.skipif(AGGREGATION_MODEL not in model_nodes(), reason="att_day_aggregation is not in the dbt project yet")
def test_refresh_job_recomputes_the_aggregation(dagster_env: DagsterEnv) -> None:
    from orchestration.dagster_defs.launch import launch_refresh_aggregation
    from orchestration.warehouse import database

    with database.connect(autocommit=True) as conn:
        # Corrupt one district's aggregation behind dbt's back: only a full recompute repairs it.
        conn.execute("update state.att_day_aggregation set absent_minutes = -1 where district_code = 'D02'")
    assert launch_refresh_aggregation(["D02"]) == 0
    with database.connect(autocommit=True) as conn:
        broken = conn.execute("select count(*) from state.att_day_aggregation where absent_minutes < 0").fetchone()
    assert broken == (0,)


def test_writer_lock_makes_a_second_run_wait(dagster_env: DagsterEnv) -> None:
    """A run that needs the writer lock waits while another writer holds it, then completes."""
    from orchestration.warehouse.writer_lock import state_writer_lock

    outcome: dict[str, Any] = {}

    def resync() -> None:
        outcome["code"] = _launch_resync(["D02"], ["person"], False)
        outcome["finished"] = time.monotonic()

    with state_writer_lock("test holder", log=lambda _: None):
        worker = threading.Thread(target=resync)
        worker.start()
        time.sleep(8)
        assert worker.is_alive(), "the run must wait for the writer lock"
        released = time.monotonic()
    worker.join(timeout=300)
    assert outcome["code"] == 0 and outcome["finished"] > released


_CONCURRENT_SCRIPT = """
import sys
from orchestration.dagster_defs.launch import launch_resync
sys.exit(launch_resync(["D03"], ["person"], True))
"""


def test_two_concurrent_requests_for_the_same_district_serialize(dagster_env: DagsterEnv) -> None:
    """Two resync processes for D03 at once: both succeed, their writing steps never overlap."""
    from orchestration.warehouse.writer_lock import HOLDING, RELEASING

    started = time.time()
    processes = [subprocess.Popen([sys.executable, "-c", _CONCURRENT_SCRIPT], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0], "\n".join(outputs)
    with DagsterInstance.get() as instance:
        runs = [r.dagster_run for r in instance.get_run_records()
                if r.dagster_run.job_name == "resync_state_data" and r.create_timestamp.timestamp() > started]
        assert len(runs) == 2
        intervals = []
        for run in runs:
            # The writer lock logs after taking it and before releasing it, so these bracket the writes.
            taken: dict[str | None, float] = {}
            for entry in instance.all_logs(run.run_id):
                if entry.user_message.startswith(HOLDING):
                    taken[entry.step_key] = entry.timestamp
                elif entry.user_message.startswith(RELEASING):
                    intervals.append((taken.pop(entry.step_key), entry.timestamp, run.run_id))
            assert not taken, "a step took the writer lock and never released it"
    assert {run_id for _, _, run_id in intervals} == {run.run_id for run in runs}
    intervals.sort()
    for (_start_a, end_a, run_a), (start_b, _end_b, run_b) in itertools.pairwise(intervals):
        if run_a != run_b:
            assert start_b >= end_a, "writing steps of two runs overlapped"


def test_sync_status_rows_and_asset(dagster_env: DagsterEnv) -> None:
    from orchestration.dagster_defs.sync_status import SYNC_STATUS_KEY
    from orchestration.monitoring.sync_status import format_table, sync_status_rows

    rows = sync_status_rows()
    assert [r["district"] for r in rows] == list(CODES)
    for row in rows:
        assert row["last_load"] is not None and row["last_build"] is not None and row["models_built"] > 0
        assert row["stale_for"] is not None and not row["stale"]
    assert "D04" in format_table(rows)
    # A load that not every model has read yet shows as models behind.
    assert _launch_resync(["D01"], ["person"], False) == 0
    assert next(r for r in sync_status_rows() if r["district"] == "D01")["models_behind"] > 0

    result = dagster_env.defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dagster_env.instance, asset_selection=[SYNC_STATUS_KEY])
    assert result.success
    checks = [e for e in result.all_events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION]
    assert checks and checks[0].asset_check_evaluation_data.passed


def test_definitions_validate_cli(dagster_env: DagsterEnv) -> None:
    """`dagster definitions validate` loads the code location the way the webserver does."""
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run([str(dagster), "definitions", "validate", "-m", "orchestration.dagster_defs.definitions"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_failed_district_load_fails_the_run_and_keeps_the_others(dagster_env: DagsterEnv,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from orchestration.districts.registry import DistrictSource, write_registry
    from orchestration.settings import registry_path

    broken = District(code="D05", name="District D05", source=DistrictSource("database", database="no_such_db_d05"))
    original = registry_path().read_text()
    write_registry(registry_path(), [*dagster_env.districts.values(), broken])
    try:
        before = landing_batches()
        assert _launch_resync(["D01", "D05"], ["person"], False) == 1
        assert "D05" in capsys.readouterr().err
        after = landing_batches()
        assert after["D01"] > before["D01"], "the healthy district still loaded"
        assert "D05" not in after
    finally:
        registry_path().write_text(original)


HOURLY_CRON = "0 7-17 * * 1-5"


def zone_at_ten(now: datetime) -> str:
    """A fixed-offset zone in which it is now between 10:00 and 10:59: a run now is a 10:00 tick there."""
    offset = (10 - now.hour) % 24
    offset = offset - 24 if offset > 14 else offset
    # POSIX sign: Etc/GMT+5 is UTC-5.
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def test_hourly_school_hours_schedule_builds_as_of_the_last_complete_day(
        dagster_env: DagsterEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """ATTENDANCE_NIGHTLY_CRON="0 7-17 * * 1-5" (hourly in school hours) is a supported setting: a tick at
    10:00 loads today's rows into landing, but the build's as-of date stays yesterday in the state's zone."""
    from orchestration.dagster_defs.definitions import build_definitions
    from orchestration.dagster_defs.jobs import NIGHTLY

    zone = zone_at_ten(datetime.now(tz=UTC))
    monkeypatch.setenv("ATTENDANCE_NIGHTLY_CRON", HOURLY_CRON)
    monkeypatch.setenv("ATTENDANCE_TIMEZONE", zone)
    defs = build_definitions()
    schedule = defs.resolve_schedule_def(NIGHTLY)
    assert (schedule.cron_schedule, schedule.execution_timezone) == (HOURLY_CRON, zone)
    ten = datetime(2026, 12, 1, 10, 0, tzinfo=ZoneInfo(zone))  # a Tuesday
    context = build_schedule_context(instance=dagster_env.instance, scheduled_execution_time=ten)
    [request] = schedule.evaluate_tick(context).run_requests or []

    started = datetime.now(tz=UTC)
    today = started.astimezone(ZoneInfo(zone)).date()
    yesterday = today - timedelta(days=1)
    with district_conn(dagster_env.districts["D01"]) as conn:
        # Calendar 10 (schedule 11, periods 111 and 112) holds school on both days; person 1 misses the
        # morning yesterday and today (today's row typed at 09:55, before the 10:00 run).
        for day_id, day in ((1901, yesterday), (1902, today)):
            conn.execute("insert into day values (%s, 10, %s, 11, true, true, null, now()) "
                         "on conflict do nothing", (day_id, day))
            conn.execute("insert into attendance values (%s, 1, 10, 111, %s, 'A', 'E', 31, null, null, %s) "
                         "on conflict do nothing", (day_id + 7000, day, datetime.combine(day, clock_time(9, 55))))
    result = defs.resolve_job_def(NIGHTLY).execute_in_process(instance=dagster_env.instance, tags=request.tags,
                                                              raise_on_error=False)
    assert result.success
    finished = datetime.now(tz=UTC)
    with database.connect(autocommit=True) as conn:
        landed = {r[0] for r in conn.execute(
            "select date from landing.attendance where district_code = 'D01' and date >= %s", (yesterday,))}
        as_of = conn.execute("select as_of_date from state.model_build "
                             "where model_name = 'att_day_aggregation' and district_code = 'D01'").fetchone()
        aggregated = {r[0] for r in conn.execute(
            "select date from state.att_day_aggregation where district_code = 'D01' and date >= %s", (yesterday,))}
    assert landed == {yesterday, today}, "today's rows are loaded and ready"
    last_complete = {d.astimezone(ZoneInfo(zone)).date() - timedelta(days=1) for d in (started, finished)}
    assert as_of is not None and as_of[0] in last_complete
    assert aggregated == {as_of[0]}, "a partly recorded day never counts"


def _nightly(dagster_env: DagsterEnv) -> set[str]:
    """Run the nightly job over every district; the models it materialized (the last part of their keys)."""
    from orchestration.dagster_defs.jobs import NIGHTLY

    schedule = dagster_env.defs.resolve_schedule_def(NIGHTLY)
    request = schedule.evaluate_tick(build_schedule_context(instance=dagster_env.instance)).run_requests[0]  # type: ignore[index]
    result = dagster_env.defs.resolve_job_def(NIGHTLY).execute_in_process(
        instance=dagster_env.instance, tags=request.tags, raise_on_error=False)
    assert result.success
    return {event.asset_key.path[-1] for event in result.get_asset_materialization_events()
            if event.asset_key is not None and event.asset_key.path[0] == "state"}


def test_nightly_leaves_out_the_models_with_nothing_new(dagster_env: DagsterEnv) -> None:
    """The nightly (hourly) job asks the warehouse first: a state table whose landing table no load changed
    since its last build, and an aggregation already built as of the run's date after every state table,
    are not in the dbt invocation at all (no materialization, no data tests); what changed is built."""
    from orchestration.dbt.work_plan import AGGREGATION, LANDING_MODELS

    _nightly(dagster_env)
    before = row_versions("attendance")
    assert _nightly(dagster_env) == {"district"}, "nothing new: only the registry's table is rebuilt"
    assert row_versions("attendance") == before
    with database.connect(autocommit=True) as conn:
        # Recorded as current, as a build that found nothing to do records itself.
        horizons = dict(conn.execute("select district_code, landing_batch_id from state.model_build "
                                     "where model_name = 'attendance'").fetchall())
    assert horizons == landing_batches()

    rename_people(dagster_env, CODES[:1], "-hourly")
    built = _nightly(dagster_env)
    assert {"person", AGGREGATION} <= built
    assert not built & (set(LANDING_MODELS) - {"person"}), built
    assert all(name.endswith("-hourly") for name in last_names(CODES[0]))
    assert row_versions("attendance") == before


def row_versions(table: str) -> str:
    """Where every row of a state table is and which transaction wrote it: any rewrite changes this."""
    with database.connect(autocommit=True) as conn:
        row = conn.execute(sql.SQL("select md5(string_agg(ctid::text || xmin::text, '|' order by ctid)) from {}")
                           .format(sql.Identifier("state", table))).fetchone()
    assert row is not None
    return str(row[0])
