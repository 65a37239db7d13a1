"""Runs dbt for the CLI and the tests, against the same database the rest of the project uses.

Each call is a separate dbt process (this interpreter's dbt): dbt keeps adapter and manifest state in
module globals, so repeated in-process invocations (with different vars) are fragile, and a process
also gives a clean environment for the PG* variables that profiles/profiles.yml reads.

Every run gets its own target directory (artifacts such as run_results.json are read from it and then
removed, unless `target_path` is given), so concurrent runs never read each other's results. Partial
parsing would not help much anyway: dbt re-parses whenever the vars change, and they carry the
district selection.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from orchestration import settings
from orchestration.child_processes import PARENT_PID_VARIABLE, run_child
from orchestration.districts.registry import canonical_code
from orchestration.warehouse import database, writer_sessions
from orchestration.warehouse.run_origin import ORIGIN_VARIABLE

# The dbt of this interpreter, whether or not its bin folder is on PATH, through the wrapper that makes
# it die with this process (orchestration/dbt/child.py). dagster-dbt takes a path instead: the same code
# as the `attendance-dbt` entry point (dbt_executable).
DBT_COMMAND = (sys.executable, "-c", "from orchestration.dbt.child import main; main()")
DBT_ENTRY_POINT = "attendance-dbt"
# Node statuses in run_results.json that make a run fail (warnings do not).
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
# The state's time zone decides which day is "yesterday", the default as-of date (dbt var state_time_zone).
TIME_ZONE_VARIABLE = "ATTENDANCE_TIMEZONE"
DEFAULT_TIME_ZONE = "America/Denver"
# dbt options that select nodes; a selection that matches nothing must fail, not "succeed" with nothing done.
SELECTION_OPTIONS = frozenset({"--select", "-s", "--models", "-m", "--selector"})
# Commands that run what they select and record it in run_results.json (`ls` and `show` write none).
RUNNING_COMMANDS = frozenset({"build", "run", "test", "seed", "snapshot"})
# The jobs' builds (Dagster's, the benchmark's) leave out dbt's unit tests: they check the models' SQL
# against fixed inputs, so they can only fail on a code change, which CI runs them for (tests/dbt); on a
# schedule they would only cost time. Data tests and the tables' constraints check the data.
JOB_EXCLUDES = ("--exclude-resource-type", "unit_test")
# Makes dbt fail (instead of warn) on a selection criterion that matches no node, naming the criterion.
NO_MATCH_IS_AN_ERROR = ("--warn-error-options", json.dumps({"error": ["NoNodesForSelectionCriteria"]}))


@dataclass(frozen=True)
class NodeResult:
    """One node of run_results.json: a model, test, seed or hook."""

    unique_id: str
    status: str
    execution_time: float
    message: str | None
    failures: int | None
    relation_name: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass(frozen=True)
class DbtRunResult:
    args: list[str]  # after `dbt`
    returncode: int
    stdout: str
    stderr: str
    run_results: dict[str, Any] | None
    nodes: list[NodeResult] = field(default_factory=list)
    error: str | None = None  # the runner's own verdict (e.g. a selection that matched nothing)
    # Who held the table locks that nodes timed out waiting for (writer_sessions.describe_lock_timeouts).
    lock_holders: str = ""

    @property
    def success(self) -> bool:
        return self.returncode == 0 and self.error is None

    def node(self, unique_id: str) -> NodeResult:
        return next(node for node in self.nodes if node.unique_id == unique_id)

    @property
    def failure_message(self) -> str:
        """What went wrong, readable: the failing nodes' messages, else dbt's own error text."""
        if self.success:
            return ""
        if self.error:
            return self.error
        failed = [f"{node.unique_id}: {(node.message or node.status).strip()}" for node in self.nodes if node.failed]
        if failed:
            blocked = f"\n{self.lock_holders}" if self.lock_holders else ""
            return f"dbt {self.command_name} failed:\n" + "\n".join(failed) + blocked
        return f"dbt {self.command_name} failed (exit code {self.returncode}):\n{_error_text(self.stdout, self.stderr)}"

    @property
    def command_name(self) -> str:
        return self.args[0] if self.args else "dbt"

    def raise_for_failure(self) -> DbtRunResult:
        if not self.success:
            raise DbtRunError(self)
        return self


class DbtRunError(RuntimeError):
    def __init__(self, result: DbtRunResult) -> None:
        self.result = result
        super().__init__(result.failure_message)


def _error_text(stdout: str, stderr: str, max_lines: int = 40) -> str:
    lines = stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if "Encountered an error" in line), None)
    if start is None:
        start = next((i for i, line in enumerate(lines) if "Error" in line), max(0, len(lines) - max_lines))
    text = "\n".join(lines[start:start + max_lines])
    if stderr.strip():
        text += "\n" + "\n".join(stderr.strip().splitlines()[-max_lines:])
    return text.strip()


def state_time_zone() -> str:
    """The state's IANA time zone: $ATTENDANCE_TIMEZONE, default America/Denver (refused when unknown)."""
    name = os.environ.get(TIME_ZONE_VARIABLE, "").strip() or DEFAULT_TIME_ZONE
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ValueError(f"{TIME_ZONE_VARIABLE}={name!r} is not a known time zone (e.g. {DEFAULT_TIME_ZONE})") from None
    return name


def dbt_executable() -> str:
    """DBT_COMMAND as one path, for dagster-dbt: `attendance-dbt` of this environment (its bin folder need
    not be on PATH); plain dbt only in an environment installed before that entry point existed."""
    for name in (DBT_ENTRY_POINT, "dbt"):
        beside = Path(sys.executable).parent / name
        if beside.exists():
            return str(beside)
    return "dbt"


def dbt_vars(districts: Sequence[str] | None = None, as_of_date: date | None = None, *,
             state_replace: bool = False) -> dict[str, object]:
    """The `--vars` of a run: the district selection (canonical and sorted; None or empty = every
    district), the as-of date (None: dbt's default, the last complete day: yesterday in the state's time
    zone, see macros/as_of_date.sql) and that time zone. state_replace: the state tables replace each
    selected district whole instead of applying the landing batches they have not incorporated (the
    weekly resync and the resync tool, macros/district_replace.sql)."""
    values: dict[str, object] = {"state_time_zone": state_time_zone()}
    if state_replace:
        values["state_replace"] = True
    if districts:
        values["districts"] = sorted({canonical_code(code) for code in districts})
    if as_of_date is not None:
        values["as_of_date"] = as_of_date.isoformat()
    return values


def dbt_args(args: list[str], *, districts: list[str] | None = None, as_of_date: date | None = None,
             full_refresh: bool = False, project_dir: Path | None = None, profiles_dir: Path | None = None,
             target_path: Path | None = None, log_path: Path | None = None, state_replace: bool = False) -> list[str]:
    """The dbt command line after `dbt`: the subcommand and its arguments, then the project's options."""
    if not args or args[0].startswith("-"):
        raise ValueError(f"dbt arguments must start with a subcommand (build, run, test, ls, ...), got {args!r}")
    from orchestration.warehouse.rights import district_writer_dbt_args

    command = [*args, *district_writer_dbt_args(args),
               "--project-dir", str(project_dir or settings.DBT_PROJECT_DIR),
               "--profiles-dir", str(profiles_dir or settings.DBT_PROFILES_DIR)]
    if target_path is not None:
        command += ["--target-path", str(target_path)]
    if log_path is not None:
        command += ["--log-path", str(log_path)]
    if selection_of(args):
        command += NO_MATCH_IS_AN_ERROR
    command += vars_argument(districts, as_of_date, state_replace=state_replace)
    if full_refresh:
        command.append("--full-refresh")
    return command


def vars_argument(districts: Sequence[str] | None = None, as_of_date: date | None = None, *,
                  state_replace: bool = False) -> list[str]:
    """`--vars` with dbt_vars: the one place every dbt run (CLI, Dagster, tests) gets its vars from."""
    return ["--vars", json.dumps(dbt_vars(districts, as_of_date, state_replace=state_replace), sort_keys=True)]


def as_of_date_of(text: str | None) -> date | None:
    """An as-of date given as text (Dagster run config), refused clearly when it is not an ISO date."""
    if text is None or not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"as_of_date {text!r} is not an ISO date (YYYY-MM-DD)") from None


def selection_of(args: list[str]) -> str | None:
    """The node selection given in dbt arguments (`--select a b --exclude c` -> "a b"), None without one."""
    chosen: list[str] = []
    taking = False
    for arg in args:
        if arg.startswith("-"):
            name, _, value = arg.partition("=")
            taking = name in SELECTION_OPTIONS
            if taking and value:
                chosen.append(value)
        elif taking:
            chosen.append(arg)
    return " ".join(chosen) if chosen else None


def selection_error(args: list[str], stdout: str, returncode: int, nodes: list[NodeResult]) -> str | None:
    """Why a run with a selection is a failure although dbt may have exited 0: it selected no node."""
    selection = selection_of(args)
    if selection is None:
        return None
    unmatched = [line.split("criterion", 1)[1].split("does not match", 1)[0].strip()
                 for line in stdout.splitlines() if "does not match any enabled nodes" in line and "criterion" in line]
    if unmatched:
        return (f"dbt {args[0]}: the selection criterion {', '.join(unmatched)} matches no model, test or seed "
                f"of the dbt project; nothing ran")
    if returncode == 0 and not nodes and args[0] in RUNNING_COMMANDS:
        return f"dbt {args[0]}: --select {selection!r} selects nothing to {args[0]}; nothing ran"
    return None


def dbt_process_variables(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """What every dbt process of the project gets on top of `base` (default: this process's environment):
    the PG* settings of the state database (starting it if embedded), the run's origin (when set), no usage
    statistics, the writer sessions' lock timeout, dead-client check and mark, and this process's pid, which
    attendance-dbt checks before it asks to die with this process."""
    connection = database.ensure_server()
    base = os.environ if base is None else base
    pg = connection.pg_environment()
    # Who builds (run_origin.py), recorded by macros/run_origin.sql; without it dbt records its invocation id.
    origin = {ORIGIN_VARIABLE: base[ORIGIN_VARIABLE]} if base.get(ORIGIN_VARIABLE, "").strip() else {}
    return {**pg, **origin, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            **writer_sessions.dbt_session_environment({**base, **pg}), PARENT_PID_VARIABLE: str(os.getpid())}


def dbt_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus dbt_process_variables, for a dbt subprocess."""
    env = dict(os.environ)
    env.setdefault("DBT_USE_COLORS", "false")
    env.update(dbt_process_variables(env))
    env.update(extra or {})
    return env


def _read_run_results(target_path: Path) -> tuple[dict[str, Any] | None, list[NodeResult]]:
    path = target_path / "run_results.json"
    if not path.exists():
        return None, []
    content = json.loads(path.read_text())
    nodes = [
        NodeResult(unique_id=entry["unique_id"], status=str(entry.get("status")),
                   execution_time=float(entry.get("execution_time") or 0.0), message=entry.get("message"),
                   failures=entry.get("failures"), relation_name=entry.get("relation_name"))
        for entry in content.get("results", [])
    ]
    return content, nodes


def run_dbt(args: list[str], *, districts: list[str] | None = None, as_of_date: date | None = None,
            full_refresh: bool = False, target_path: Path | None = None, timeout: float | None = None,
            env: dict[str, str] | None = None, state_replace: bool = False) -> DbtRunResult:
    """Run one dbt command (e.g. `["build", "--select", "+attendance"]`) and collect its results.

    `districts` limits the state models to those districts (None: every district of the registry);
    `as_of_date` pins the aggregation's and reports' as-of date (None: yesterday in the state's time zone,
    the last complete day). A selection (`--select`) that matches no node makes the run fail.
    The result never raises on a dbt failure: check `success` or call `raise_for_failure()`.
    """
    log_path = settings.local_dir() / "dbt" / "logs"
    log_path.mkdir(parents=True, exist_ok=True)
    environment = dbt_environment(env)
    with tempfile.TemporaryDirectory(prefix="run-", dir=log_path.parent) as scratch:
        target = target_path or Path(scratch)
        target.mkdir(parents=True, exist_ok=True)
        (target / "run_results.json").unlink(missing_ok=True)
        arguments = dbt_args(args, districts=districts, as_of_date=as_of_date, full_refresh=full_refresh,
                             target_path=target, log_path=log_path, state_replace=state_replace)
        completed = run_child([*DBT_COMMAND, *arguments], env=environment, timeout=timeout,
                              cwd=settings.PROJECT_ROOT)
        run_results, nodes = _read_run_results(target)
    error = selection_error(arguments, completed.stdout, completed.returncode, nodes)
    return DbtRunResult(args=arguments, returncode=completed.returncode or (1 if error else 0), stdout=completed.stdout,
                        stderr=completed.stderr, run_results=run_results, nodes=nodes, error=error,
                        lock_holders=lock_timeout_holders(nodes))


def lock_timeout_holders(nodes: list[NodeResult]) -> str:
    """Who held the locks that failed nodes timed out waiting for ('' when no node hit the timeout)."""
    timed_out = {node.unique_id: node.relation_name for node in nodes
                 if node.failed and writer_sessions.LOCK_TIMEOUT_TEXT in (node.message or "")}
    if not timed_out:
        return ""
    with database.connect(autocommit=True) as conn:
        return writer_sessions.describe_lock_timeouts(conn, timed_out)
