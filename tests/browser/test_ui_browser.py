"""The Dagster UI in a real browser: an analyst resyncs two districts with Check Dependencies.

Starts `dagster dev` (webserver and daemon) on a free port against a fresh state database, drives
Debian's headless Chromium with Playwright: opens the aggregation asset, shows its upstream lineage,
"Materialize all" with two districts picked, launches, waits for the run to succeed, then checks the
state database: those two districts were reloaded from their (changed) source data and rebuilt, the
other two are untouched. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from orchestration.dagster_defs.dbt_assets import AGGREGATION_MODEL, model_nodes
from orchestration.settings import PROJECT_ROOT
from tests.support.dagster_env import (
    CODES,
    DagsterEnv,
    built_at,
    dagster_env_for,
    landing_batches,
    last_names,
    rename_people,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
PICKED = ("D01", "D02")
UNTOUCHED = ("D03", "D04")
BACKFILL_TAG = "dagster/backfill"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium missing: run .ci/install_browser.sh"),
]


def _target_model() -> str:
    """att_day_aggregation when the dbt project has it, else the attendance table it is built from."""
    return AGGREGATION_MODEL if AGGREGATION_MODEL in model_nodes() else "attendance"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[tuple[DagsterEnv, str]]:
    from orchestration.dagster_defs.launch import start_ui, stop_ui, wait_for_ui

    with dagster_env_for(tmp_path) as env:
        ARTIFACTS.mkdir(exist_ok=True)
        port = _free_port()
        process = start_ui(port=port, log_path=ARTIFACTS / "dagster-ui.log")
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_ui(url, process=process)
            yield env, url
        finally:
            stop_ui(process)


def _wait_for_backfill_run(instance: DagsterInstance, started_after: float,
                           timeout_s: float = 600) -> list[DagsterRun]:
    """The runs of the backfill launched from the UI, once none is queued or running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [r for r in instance.get_run_records()
                if r.create_timestamp.timestamp() > started_after and BACKFILL_TAG in r.dagster_run.tags]
        if runs and all(r.dagster_run.is_finished for r in runs):
            return [r.dagster_run for r in runs]
        time.sleep(2)
    raise TimeoutError("the backfill's run did not finish in time")


def test_resync_two_districts_with_check_dependencies_from_the_ui(ui: tuple[DagsterEnv, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    env, url = ui
    model = _target_model()
    key = AssetKey(["state", model])
    graph = env.defs.resolve_asset_graph()
    # The districts and the bookkeeping are in the lineage too, but only the assets a run can write count.
    expected_assets = len([k for k in AssetSelection.assets(key).upstream().resolve(graph)
                           if graph.get(k).is_materializable])
    rename_people(env, CODES, "-ui")
    built_before, batches_before = built_at(model), landing_batches()
    clicked = time.time()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.set_default_timeout(60_000)
        # The analyst opens the asset, then its upstream lineage (landing -> state).
        page.goto(f"{url}/assets/state/{model}", wait_until="networkidle")
        expect(page.get_by_role("button", name="Materialize…")).to_be_visible()
        page.get_by_role("tab", name="Lineage").click()
        page.get_by_role("button", name="Upstream").click()
        all_depth = page.get_by_role("button", name="All", exact=True)
        if all_depth.is_enabled():
            all_depth.click()
        # "Materialize all" of the upstream graph is Check Dependencies.
        # "Materialize all (N)…": N counts the assets a run can write (not the districts or bookkeeping). Waiting
        # for that count (the graph at full depth), not for an idle network: the UI keeps polling, and on a
        # busy machine its requests may never pause for long enough.
        materialize_all = page.locator("button", has_text=f"Materialize all ({expected_assets})").first
        expect(materialize_all).to_be_visible()
        materialize_all.click()
        dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
        expect(dialog).to_contain_text(f"materialize {expected_assets} assets")
        dialog.get_by_text("Select a partition or create one").click()
        for code in PICKED:
            page.locator("span", has_text=code).first.click()
        page.keyboard.press("Escape")
        expect(dialog).to_contain_text(f"{len(PICKED)} partitions")
        page.screenshot(path=str(ARTIFACTS / "ui-launch-dialog.png"))
        dialog.get_by_role("button", name="Launch backfill").click()
        expect(page.get_by_text("Created backfill")).to_be_visible()

        runs = _wait_for_backfill_run(env.instance, clicked)
        assert len(runs) == 1, "two districts picked together make one run"
        run = runs[0]
        assert run.status == DagsterRunStatus.SUCCESS, f"run {run.run_id} ended {run.status}"
        assert (run.tags[ASSET_PARTITION_RANGE_START_TAG], run.tags[ASSET_PARTITION_RANGE_END_TAG]) == PICKED
        # The UI shows the run as a success, and the asset page its new materialization.
        page.goto(f"{url}/runs/{run.run_id}", wait_until="networkidle")
        expect(page.get_by_text("Success").first).to_be_visible()
        page.goto(f"{url}/assets/state/{model}", wait_until="networkidle")
        expect(page.get_by_text("D02").first).to_be_visible()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / f"ui-{model}.png"), full_page=True)
        browser.close()

    built_after, batches_after = built_at(model), landing_batches()
    for code in PICKED:
        assert batches_after[code] > batches_before[code], f"{code}: landing reloaded (Check Dependencies)"
        assert built_after[code] > built_before[code], f"{code}: {model} rebuilt"
        assert all(name.endswith("-ui") for name in last_names(code)), f"{code}: parents rebuilt from new data"
    for code in UNTOUCHED:
        assert batches_after[code] == batches_before[code] and built_after[code] == built_before[code]
        assert not any(name.endswith("-ui") for name in last_names(code)), f"{code} untouched"
