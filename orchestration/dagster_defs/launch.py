"""Launching the Dagster jobs from the command line, and starting the Dagster UI.

Runs started here execute in this process against the persistent Dagster instance in $DAGSTER_HOME
(default <ATTENDANCE_HOME or .local>/dagster), so they appear in the UI's run history next to the runs
started from the UI and the schedules, and they take the same concurrency pool slot and writer lock.

Functions for the CLI (each returns an exit code: 0 success, 1 the run failed, 2 refused before running):
  launch_resync(districts, objects, check_dependencies)   the resync tool (job resync_state_data)
  launch_refresh_aggregation(districts)                    Attendance Aggregation Refresh
  sync_status_rows()                                       the `status` table (see monitoring.sync_status)
  run_ui(host, port)                                       `dagster dev` (webserver and daemon) until Ctrl-C
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.child_processes import request_death_signal, stop_process
from orchestration.districts.registry import RegistryError, select_districts
from orchestration.monitoring.sync_status import format_table, sync_status_rows
from orchestration.settings import PROJECT_ROOT, local_dir
from orchestration.warehouse import database

__all__ = ["dagster_home", "format_table", "launch_job", "launch_refresh_aggregation", "launch_resync", "run_ui",
           "start_ui", "sync_status_rows"]

DEFINITIONS_MODULE = "orchestration.dagster_defs.definitions"
_TEMPLATE = Path(__file__).resolve().parent / "dagster.yaml"


def dagster_home() -> Path:
    """$DAGSTER_HOME (default <ATTENDANCE_HOME or .local>/dagster), with the project's dagster.yaml in it."""
    home = Path(os.environ.get("DAGSTER_HOME") or local_dir() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(_TEMPLATE, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def instance() -> Any:
    """The persistent DagsterInstance that the UI also uses."""
    from dagster import DagsterInstance

    dagster_home()
    return DagsterInstance.get()


# Module-level job loaders, so `reconstructable` can find them again in a run worker.
def resync_state_data_job() -> Any:
    from orchestration.dagster_defs.definitions import current_definitions
    from orchestration.dagster_defs.jobs import RESYNC

    return current_definitions().resolve_job_def(RESYNC)


def attendance_aggregation_refresh_job() -> Any:
    from orchestration.dagster_defs.definitions import current_definitions
    from orchestration.dagster_defs.jobs import REFRESH

    return current_definitions().resolve_job_def(REFRESH)


_JOB_LOADERS = {"resync_state_data": resync_state_data_job,
                "attendance_aggregation_refresh": attendance_aggregation_refresh_job}


@dataclass(frozen=True)
class LaunchResult:
    run_id: str
    success: bool
    duration_s: float
    materializations: int
    failed_checks: int
    error: str | None

    @property
    def exit_code(self) -> int:
        return 0 if self.success else 1


def launch_job(job_name: str, run_config: dict[str, Any], *, tags: dict[str, str] | None = None) -> LaunchResult:
    """Execute one of the config-driven jobs in this process, recorded in the persistent instance."""
    from dagster import DagsterEventType, execute_job, reconstructable

    started = time.perf_counter()
    with instance() as dagster_instance:
        result = execute_job(reconstructable(_JOB_LOADERS[job_name]), instance=dagster_instance,
                             run_config=run_config, tags={"attendance/launched_by": "cli", **(tags or {})},
                             raise_on_error=False)
        events = result.all_events
        materializations = sum(1 for e in events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION)
        failed_checks = sum(1 for e in events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
                            and not e.asset_check_evaluation_data.passed)
        failure = next((e for e in events if e.event_type == DagsterEventType.STEP_FAILURE), None)
        error = None
        if failure is not None and failure.step_failure_data and failure.step_failure_data.error:
            error = failure.step_failure_data.error.message.strip()
        return LaunchResult(run_id=result.run_id, success=result.success, duration_s=time.perf_counter() - started,
                            materializations=materializations, failed_checks=failed_checks, error=error)


def _require_write(action: str) -> None:
    import psycopg

    from orchestration.warehouse.rights import require_district_write

    # A fresh warehouse has no roles yet: the first load creates them. District-level writers pass here;
    # their districts were checked by writable_districts.
    with database.connect(autocommit=True) as conn, contextlib.suppress(psycopg.errors.UndefinedObject):
        require_district_write(conn, action, None)


def _report(job_name: str, result: LaunchResult) -> int:
    status = "succeeded" if result.success else "FAILED"
    print(f"{job_name} run {result.run_id} {status} in {result.duration_s:.1f}s: "
          f"{result.materializations} asset partition(s) materialized, {result.failed_checks} failed check(s)")
    if result.error:
        print(f"attendance-sync: {result.error}", file=sys.stderr)
    print(f"run history: attendance-sync ui, then Runs -> {result.run_id[:8]}")
    return result.exit_code


def _report_with_backdated_changes(job_name: str, run_config: dict[str, Any]) -> int:
    """Launch and report the job, then one line per district its aggregation builds recorded (if any)."""
    from orchestration.dbt.backdated import backdated_changes, database_time, summary_lines

    with database.connect(autocommit=True) as conn:
        since = database_time(conn)
    code = _report(job_name, launch_job(job_name, run_config))
    with database.connect(autocommit=True) as conn:
        for line in summary_lines(backdated_changes(conn, since=since)):
            print(line)
    return code


def _refuse(error: Exception) -> int:
    print(f"attendance-sync: {error}", file=sys.stderr)
    return 2


def launch_resync(districts: list[str] | None, objects: list[str] | None, check_dependencies: bool,
                  as_of_date: dt.date | None = None, allow_mass_delete: bool = False) -> int:
    """The resync tool through Dagster: reload the districts' landing, then build the objects.

    `districts` None or empty means every district, `objects` None or empty every model; with
    `check_dependencies` every model the objects depend on is rebuilt first.
    """
    from dagster import Failure

    from orchestration.dagster_defs.jobs import RESYNC, resync_selection
    from orchestration.warehouse.rights import PermissionDenied, use_district_dbt_role, writable_districts

    try:
        codes = [d.code for d in select_districts(writable_districts("run a resync", districts or None))]
        resync_selection(list(objects or []), check_dependencies)
        _require_write("run a resync")
        if use_district_dbt_role("run a resync"):
            print("district-level resync: landing and state tables of these districts; the reports are rebuilt "
                  "by the next state-level build")
    except (RegistryError, PermissionDenied) as error:
        return _refuse(error)
    except Failure as error:
        return _refuse(ValueError(error.description))
    config: dict[str, Any] = {"districts": codes, "objects": list(objects or []),
                              "check_dependencies": check_dependencies}
    if as_of_date:
        config["as_of_date"] = as_of_date.isoformat()
    if allow_mass_delete:
        config["allow_mass_delete"] = True
    print(f"resync of {', '.join(objects or ['every object'])} for {', '.join(codes)}"
          f"{' with Check Dependencies' if check_dependencies else ''}")
    return _report_with_backdated_changes(RESYNC, config)


def launch_refresh_aggregation(districts: list[str] | None, as_of_date: dt.date | None = None) -> int:
    """Attendance Aggregation Refresh through Dagster, for the districts (None or empty: all)."""
    from orchestration.dagster_defs.jobs import REFRESH
    from orchestration.warehouse.rights import PermissionDenied, use_district_dbt_role, writable_districts

    try:
        codes = [d.code for d in select_districts(writable_districts("run an aggregation refresh",
                                                                     districts or None))]
        _require_write("run an aggregation refresh")
        use_district_dbt_role("run an aggregation refresh", full_refresh=True)
    except (RegistryError, PermissionDenied) as error:
        return _refuse(error)
    config: dict[str, Any] = {"districts": codes}
    if as_of_date:
        config["as_of_date"] = as_of_date.isoformat()
    print(f"Attendance Aggregation Refresh for {', '.join(codes)}")
    return _report_with_backdated_changes(REFRESH, config)


def print_sync_status() -> int:
    """`attendance-sync status`: the sync status table; exit code 1 when a district is stale."""
    rows = sync_status_rows()
    print(format_table(rows))
    return 1 if any(row["stale"] for row in rows) else 0


def _ui_environment() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "DAGSTER_HOME": str(dagster_home()),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "DAGSTER_DISABLE_TELEMETRY": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


def start_ui(host: str = "127.0.0.1", port: int = 3000, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `dagster dev` (webserver, daemon) in the background; stop it with stop_ui(process)."""
    from orchestration.dagster_defs.project import ensure_manifest

    database.ensure_server()  # the embedded warehouse, started once here rather than by every run worker
    ensure_manifest()
    command = [str(Path(sys.executable).parent / "dagster"), "dev", "-m", DEFINITIONS_MODULE,
               "--host", host, "--port", str(port)]
    output = open(log_path, "ab") if log_path else None  # noqa: SIM115 - handed to the child process
    try:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env=_ui_environment(), stdout=output,
                                stderr=subprocess.STDOUT if output else None, start_new_session=True,
                                preexec_fn=request_death_signal)
    finally:
        if output:
            output.close()


def wait_for_ui(url: str, timeout_s: float = 180.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the Dagster UI did not answer at {url} within {timeout_s:.0f}s")


def stop_ui(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    """Stop `dagster dev` and its children (webserver, daemon, code server, run workers): SIGINT to its
    process group, SIGKILL after timeout_s, and any descendant left over (in another group) killed too."""
    return stop_process(process, grace_s=timeout_s, first_signal=signal.SIGINT)


def run_ui(host: str = "127.0.0.1", port: int = 3000) -> int:
    """`attendance-sync ui`: the Dagster UI and daemon against the project's warehouse, until Ctrl-C."""
    process = start_ui(host, port)
    print(f"Dagster UI on http://{host}:{port} (Dagster storage in {dagster_home()}); Ctrl-C stops it")
    try:
        return process.wait()
    finally:
        # Ctrl-C, SIGTERM (child_processes.Stopped) or any error: the webserver and daemon go too.
        stop_ui(process)


def benchmark_overhead(districts: Sequence[str], objects: Sequence[str], *, check_dependencies: bool = False,
                       repeats: int = 1) -> dict[str, float]:
    """Seconds for the same resync through Dagster (job resync_state_data) and as plain loader + dbt build.

    Both paths load the districts' landing and then run one `dbt build` of the same selection, so the
    difference is Dagster's overhead (run storage, event handling, row-count metadata). Best of
    `repeats`; `dagster_first_s` is the first Dagster run of the process, which also builds the
    definitions (what every `attendance-sync resync` pays, besides importing Dagster).
    """
    from orchestration.dagster_defs.jobs import RESYNC, resync_selection
    from orchestration.dbt.runner import run_dbt
    from orchestration.landing.load import load_districts
    from orchestration.warehouse.writer_lock import state_writer_lock

    codes = [d.code for d in select_districts(list(districts))]
    select = resync_selection(list(objects), check_dependencies)
    plain: list[float] = []
    through_dagster: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        with state_writer_lock("benchmark plain resync", log=lambda _: None):
            results = load_districts(select_districts(codes))
            if not all(r.ok for r in results):
                raise RuntimeError("landing load failed: " + "; ".join(r.describe() for r in results if not r.ok))
            run_dbt(["build", "--select", " ".join(select)], districts=codes).raise_for_failure()
        plain.append(time.perf_counter() - started)
        config = {"districts": codes, "objects": list(objects), "check_dependencies": check_dependencies}
        result = launch_job(RESYNC, config, tags={"attendance/benchmark": "overhead"})
        if not result.success:
            raise RuntimeError(f"Dagster run {result.run_id} failed: {result.error}")
        through_dagster.append(result.duration_s)
    best_plain, best_dagster = min(plain), min(through_dagster)
    return {"plain_s": round(best_plain, 2), "dagster_s": round(best_dagster, 2),
            "dagster_first_s": round(through_dagster[0], 2),
            "overhead_s": round(best_dagster - best_plain, 2),
            "overhead_pct": round(100 * (best_dagster - best_plain) / best_plain, 1) if best_plain else 0.0}
