"""The Dagster UI shows the warehouse as it is, whichever way the data was built.

`attendance-sync demo` loads and builds four demo districts with no Dagster run at all; then `dagster
dev` (webserver and daemon) starts against that warehouse. Within a minute the daemon's sensor reports
what the warehouse holds, so the UI shows every district partition of the aggregation materialized with
its rows and as-of date, and the sync status with its table. A plain `dbt build` of one district is then
reported on that district's partition only. Screenshots of the catalog, the aggregation's partitions and
the sync status page go to test-artifacts/ (README's screenshot is one of them).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from orchestration.dagster_defs.district_checks import CHECKS_JOB
from orchestration.dagster_defs.sync_status import SYNC_STATUS_JOB, SYNC_STATUS_KEY
from orchestration.districts.registry import load_registry, write_registry
from orchestration.settings import DBT_PROFILES_DIR, DBT_PROJECT_DIR, PROJECT_ROOT
from orchestration.warehouse import database
from orchestration.warehouse.run_origin import ORIGIN_VARIABLE
from tests.support.warehouse import unique_name

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
AGGREGATION = AssetKey(["state", "att_day_aggregation"])
LANDING_ATTENDANCE = AssetKey(["landing", "attendance"])
# The sensor's interval is 30 s; the daemon itself takes a while to start on a busy machine.
FIRST_REPORT_TIMEOUT_S = 240
REPORTED_WITHIN_S = 60

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium missing: run .ci/install_browser.sh"),
]


@dataclass
class DemoUi:
    url: str
    instance: DagsterInstance
    codes: list[str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "attendance-sync"), *args]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture
def demo_ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DemoUi]:
    from orchestration.dagster_defs.launch import dagster_home, start_ui, stop_ui, wait_for_ui

    # The demo registry with district databases of this test's own.
    demo = [d for d in load_registry(PROJECT_ROOT / "districts.yml") if d.source.kind == "database"]
    renamed = {d.code: unique_name(f"ui_{d.code.lower()}") for d in demo}
    write_registry(tmp_path / "districts.yml",
                   [replace(d, source=replace(d.source, database=renamed[d.code])) for d in demo])
    state = unique_name("test_ui_truth")
    monkeypatch.setenv("ATTENDANCE_STATE_DATABASE", state)
    monkeypatch.setenv("ATTENDANCE_REGISTRY", str(tmp_path / "districts.yml"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    settings = database.ensure_server()
    process = None
    try:
        run = _cli("demo")
        assert run.returncode == 0, run.stdout + run.stderr
        assert "make ui" in run.stdout and "http://127.0.0.1:3000" in run.stdout, "the demo says how to open the UI"
        dagster_home()
        ARTIFACTS.mkdir(exist_ok=True)
        port = _free_port()
        process = start_ui(port=port, log_path=ARTIFACTS / "dagster-ui-truth.log")
        url = f"http://127.0.0.1:{port}"
        wait_for_ui(url, process=process)
        with DagsterInstance.get() as instance:
            yield DemoUi(url, instance, sorted(renamed))
    finally:
        if process is not None:
            stop_ui(process)
        for name in [*renamed.values(), state]:
            database.drop_database(name, settings)


def _latest(instance: DagsterInstance, key: AssetKey, partition: str) -> Any:
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[partition]),
                                              limit=1).records
    return records[0] if records else None


def _wait(condition: Any, timeout_s: float, what: str) -> float:
    """Seconds until condition() held; fails naming what did not happen."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(2)
    raise AssertionError(f"{what} not seen within {timeout_s:.0f}s")


def _metadata(record: Any) -> dict[str, Any]:
    materialization = record.event_log_entry.asset_materialization
    return {label: value.value for label, value in materialization.metadata.items()}


def _warehouse_truth() -> tuple[dict[str, int], dict[str, Any]]:
    with database.connect(autocommit=True) as conn:
        rows = dict(conn.execute("select district_code, count(*) from state.att_day_aggregation group by 1"))
        as_of = dict(conn.execute("select district_code, as_of_date from state.model_build "
                                  "where model_name = 'att_day_aggregation'"))
    return rows, as_of


def _plain_dbt_environment() -> dict[str, str]:
    """An engineer's shell pointed at this warehouse (PGHOST, PGPORT, PGDATABASE, PGPASSFILE, ...), and
    nothing the project's own commands would add."""
    env = {key: value for key, value in os.environ.items() if key != ORIGIN_VARIABLE}
    env.update(database.connection_settings().pg_environment())
    return env


def _writing_runs(instance: DagsterInstance) -> list[str]:
    """Runs other than the check evaluations and sync status refreshes the daemon starts by itself."""
    return [record.dagster_run.job_name for record in instance.get_run_records()
            if record.dagster_run.job_name not in (CHECKS_JOB, SYNC_STATUS_JOB)]


def _as_text(value: Any) -> str:
    return str(value)


def test_ui_shows_builds_made_outside_dagster(demo_ui: DemoUi) -> None:
    from playwright.sync_api import expect, sync_playwright

    instance, codes = demo_ui.instance, demo_ui.codes
    assert not _writing_runs(instance), "the demo wrote everything; no Dagster run did"
    _wait(lambda: instance.get_materialized_partitions(AGGREGATION) == set(codes)
          and instance.get_materialized_partitions(LANDING_ATTENDANCE) == set(codes)
          and instance.get_latest_materialization_event(SYNC_STATUS_KEY) is not None,
          FIRST_REPORT_TIMEOUT_S, "the demo's districts reported by the daemon")
    rows, as_of = _warehouse_truth()
    first = {code: _latest(instance, AGGREGATION, code) for code in codes}
    for code in codes:
        metadata = _metadata(first[code])
        assert metadata["dagster/row_count"] == rows[code], code
        assert _as_text(as_of[code]) in {_as_text(v) for v in metadata.values()}, f"{code}: as-of date {as_of[code]}"
        assert any("attendance-sync" in _as_text(v) for v in metadata.values()), f"{code}: origin, {metadata}"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.set_default_timeout(60_000)
        # The catalog's groups are checked in tests/dagster/test_dagster_assets.py; here, that it opens.
        page.goto(f"{demo_ui.url}/assets", wait_until="networkidle")
        expect(page.get_by_text("att_day_aggregation").first).to_be_visible()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "ui-catalog.png"))
        page.goto(f"{demo_ui.url}/assets/state/att_day_aggregation?view=partitions", wait_until="networkidle")
        expect(page.get_by_text(re.compile(rf"Materialized\W*{len(codes)}")).first).to_be_visible()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "ui-partitions.png"))
        page.goto(f"{demo_ui.url}/assets/monitoring/sync_status", wait_until="networkidle")
        for code in codes:
            expect(page.get_by_text(code).first).to_be_visible()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "ui-sync-status.png"), full_page=True)

        # An engineer builds one district with plain dbt: that partition only gets a new materialization.
        dbt = subprocess.run(
            [str(Path(sys.executable).parent / "dbt"), "build", "--select", "att_day_aggregation",
             "--vars", "{districts: [D02]}", "--profiles-dir", str(DBT_PROFILES_DIR)],
            cwd=DBT_PROJECT_DIR, capture_output=True, text=True, timeout=600, check=False,
            env=_plain_dbt_environment())
        assert dbt.returncode == 0, dbt.stdout[-3000:]
        took = _wait(lambda: _latest(instance, AGGREGATION, "D02").storage_id > first["D02"].storage_id,
                     REPORTED_WITHIN_S, "D02's plain dbt build")
        assert took <= REPORTED_WITHIN_S
        for code in codes:
            if code != "D02":
                assert _latest(instance, AGGREGATION, code).storage_id == first[code].storage_id, f"{code} unchanged"
        origin = " ".join(_as_text(v) for v in _metadata(_latest(instance, AGGREGATION, "D02")).values())
        assert "dbt" in origin and "invocation" in origin, origin
        # The sensor reports what was written; the only runs it starts evaluate checks, none writes data.
        assert not _writing_runs(instance)
        page.goto(f"{demo_ui.url}/assets/state/att_day_aggregation?view=partitions", wait_until="networkidle")
        page.get_by_text("D02", exact=True).first.click()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "ui-partition-d02.png"), full_page=True)
        browser.close()
