"""Every failure a user can cause ends in one message on stderr and a non-zero exit, never a traceback:
the real console script, run as an operator would, against the test session's PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from orchestration.cli import errors as cli_errors
from orchestration.dbt import runner as dbt_runner
from orchestration.districts.registry import District, write_registry
from orchestration.landing.load import load_districts
from orchestration.warehouse import database
from tests.support.warehouse import landing_checksums, unique_name

CLI = Path(sys.executable).parent / "attendance-sync"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


def assert_one_clear_message(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Non-zero exit, no traceback, and stderr's last line is the one message holding every `expected`."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    message = lines[-1]
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    return message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- argument checks: refused by argparse before anything runs or is written -----------------------------

@pytest.mark.parametrize("days", ["-1", "x"])
def test_simulate_refuses_a_bad_day_count(days: str) -> None:
    result = run_cli("simulate", "--days", days)
    assert result.returncode == 2
    assert_one_clear_message(result, "--days")


def test_demo_data_with_zero_districts_writes_nothing(tmp_path: Path) -> None:
    """Refused before the demo registry is overwritten (it used to be replaced by an empty one first)."""
    home = tmp_path / "home"
    registry = home / "demo" / "districts.yml"
    registry.parent.mkdir(parents=True)
    registry.write_text("# the operator's demo registry\n")
    for districts in ("0", "100"):
        result = run_cli("demo-data", "--districts", districts, env={"ATTENDANCE_HOME": str(home)})
        assert result.returncode == 2
        assert_one_clear_message(result, "--districts", districts)
    assert registry.read_text() == "# the operator's demo registry\n"


def test_demo_data_refuses_a_bad_size_before_writing_the_registry(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run_cli("demo-data", "--districts", "2", "--students", "0", env={"ATTENDANCE_HOME": str(home)})
    assert_one_clear_message(result, "--students")
    assert not (home / "demo" / "districts.yml").exists()



@pytest.mark.parametrize("scale", ["0", "2", "half"])
def test_benchmark_refuses_a_bad_scale_before_running(tmp_path: Path, scale: str) -> None:
    home = tmp_path / "home"
    result = run_cli("benchmark", "--size", "nevada", "--scale", scale, env={"ATTENDANCE_HOME": str(home)})
    assert result.returncode == 2
    assert_one_clear_message(result, "--scale", scale)
    assert not (home / "bench").exists()


def test_benchmark_without_generated_districts_says_which_section_to_run() -> None:
    """Against the test session's server, which has no benchmark district databases: refused before the
    benchmark's own warehouse is (re)made."""
    result = run_cli("benchmark", "--size", "bie", "--section", "load")
    assert result.returncode == 2
    assert_one_clear_message(result, "bench_bie_d01 is missing", "--section generate")
    with database.connect("postgres", autocommit=True) as conn:
        assert conn.execute("select count(*) from pg_database where datname = 'attendance_bench'").fetchone() == (0,)


# --- settings ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("variable", "value"), [("ATTENDANCE_TIMEZONE", "Mars/Olympus_Mons"), ("PGPORT", "fifty")])
def test_bad_settings_are_named(variable: str, value: str) -> None:
    result = run_cli("load", env={variable: value})
    assert result.returncode == 2
    assert_one_clear_message(result, variable)


# --- the server unreachable or lost ----------------------------------------------------------------------

@pytest.mark.parametrize("command", [["load"], ["build"], ["rights", "show", "somebody"], ["status"]])
def test_unreachable_server_is_named_without_its_password(command: list[str]) -> None:
    port = free_port()
    url = f"postgresql://postgres:S3cret-pw@127.0.0.1:{port}/attendance_state"
    result = run_cli(*command, env={database.URL_VARIABLE: url})
    message = assert_one_clear_message(result, f"127.0.0.1:{port}")
    assert "S3cret-pw" not in result.stderr + result.stdout
    assert "cannot be reached (Connection refused)" in message


def _terminate_backends(dbnames: list[str], stop: threading.Event) -> None:
    """Ends every session on these databases, over and over: to its clients the server is lost."""
    with database.connect("postgres", autocommit=True) as admin:
        while not stop.is_set():
            admin.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                          "where datname = any(%s) and pid <> pg_backend_pid()", (dbnames,))
            stop.wait(0.01)


def test_server_lost_during_a_load(state_db: str, make_district: Callable[..., District]) -> None:
    district = make_district("D01")
    assert district.source.database is not None
    write_registry(Path(os.environ["ATTENDANCE_REGISTRY"]), [district])
    assert all(result.ok for result in load_districts([district]))
    with database.connect() as conn:
        before = landing_checksums(conn)
    stop = threading.Event()
    killer = threading.Thread(target=_terminate_backends, args=([state_db, district.source.database], stop))
    killer.start()
    try:
        result = run_cli("load")
    finally:
        stop.set()
        killer.join()
    assert_one_clear_message(result)
    # Lost before the first district started (the loads open a connection per worker: "the connection to
    # the database server at ... was lost"), or during one.
    assert any(text in result.stderr for text in ("was lost", "terminating connection", "D01",
                                                  "cannot reach the state database")), result.stderr
    with database.connect() as conn:
        assert landing_checksums(conn) == before


# --- tool rights -------------------------------------------------------------------------------------------

@pytest.fixture
def login(state_db: str) -> Iterator[dict[str, str]]:
    """A login without any right, and the environment that makes the CLI connect as it."""
    name, password = unique_name("clerk"), "pw-" + unique_name("x")
    with database.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login password {}").format(sql.Identifier(name), sql.Literal(password)))
    settings = database.ensure_server()
    yield {"PGHOST": settings.host, "PGPORT": str(settings.port), "PGDATABASE": settings.dbname, "PGUSER": name,
           "PGPASSWORD": password}
    with database.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def test_rights_grant_by_a_user_without_rights(login: dict[str, str]) -> None:
    result = run_cli("rights", "grant", login["PGUSER"], "write", env=login)
    assert result.returncode == 2
    assert_one_clear_message(result, "permission denied", login["PGUSER"])
    with database.connect(autocommit=True) as conn:
        held = conn.execute("select count(*) from pg_auth_members m join pg_roles r on r.oid = m.member "
                            "where r.rolname = %s", (login["PGUSER"],)).fetchone()
    assert held == (0,)


@pytest.mark.parametrize("action", ["grant", "revoke", "show"])
def test_rights_for_a_role_that_does_not_exist(state_db: str, action: str) -> None:
    missing = unique_name("nobody")
    result = run_cli("rights", action, missing, "read")
    assert result.returncode == 2
    assert_one_clear_message(result, missing)


# --- dbt selections ------------------------------------------------------------------------------------------

def test_build_of_a_model_that_does_not_exist_fails(state_db: str) -> None:
    result = run_cli("build", "--select", "no_such_model")
    assert result.returncode == 1
    assert_one_clear_message(result, "attendance-sync: dbt build", "no_such_model", "matches no model")


def test_a_selection_that_runs_nothing_is_a_failure_of_the_runner() -> None:
    assert dbt_runner.selection_of(["build", "--select", "a", "b", "--exclude", "c", "--vars", "{}"]) == "a b"
    assert dbt_runner.selection_of(["build", "--select=+a", "--full-refresh"]) == "+a"
    assert dbt_runner.selection_of(["build", "--vars", "{}"]) is None
    # dbt exits 0 when `--select a --exclude a` leaves nothing; the runner does not.
    error = dbt_runner.selection_error(["build", "--select", "a", "--exclude", "a"], "", 0, [])
    assert error == "dbt build: --select 'a' selects nothing to build; nothing ran"
    assert dbt_runner.selection_error(["ls", "--select", "a"], "", 0, []) is None  # ls records no run results
    assert dbt_runner.selection_error(["build"], "", 0, []) is None


def test_resync_of_an_unknown_object_is_refused(state_db: str, make_district: Callable[..., District]) -> None:
    write_registry(Path(os.environ["ATTENDANCE_REGISTRY"]), [make_district("D01")])
    result = run_cli("resync", "--objects", "no_such_model")
    assert result.returncode == 2
    assert_one_clear_message(result, "no_such_model")


# --- what the user sees of an unexpected error ----------------------------------------------------------------

def test_unexpected_error_is_one_line_with_a_hint_and_a_traceback_only_when_debugging(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def raised(error: Exception) -> Exception:
        try:
            raise error
        except Exception as caught:
            return caught

    monkeypatch.delenv(cli_errors.DEBUG_VARIABLE, raising=False)
    assert cli_errors.report(raised(RuntimeError("boom\nsecond line")), None) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [f"attendance-sync: unexpected error: RuntimeError: boom (run with --debug or "
                                f"{cli_errors.DEBUG_VARIABLE}=1 for the traceback)"]
    monkeypatch.setenv(cli_errors.DEBUG_VARIABLE, "1")
    assert cli_errors.report(raised(RuntimeError("boom")), None) == 1
    assert "Traceback" in capsys.readouterr().err


def test_debug_shows_the_traceback_before_the_message(state_db: str) -> None:
    missing = unique_name("nobody")
    result = run_cli("rights", "show", missing, env={cli_errors.DEBUG_VARIABLE: "1"})
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert missing in result.stderr.strip().splitlines()[-1]


def test_interrupt_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_errors.report(KeyboardInterrupt(), None) == 130
    assert capsys.readouterr().err == "attendance-sync: interrupted\n"


def test_passwords_never_reach_a_message() -> None:
    text = "connection to postgresql://ann:p%20w@db:5432/x failed; password=hunter2 port=1"
    assert cli_errors.redact(text) == "connection to postgresql://ann:***@db:5432/x failed; password=*** port=1"


def test_a_lost_connection_is_recognised_whatever_its_sqlstate() -> None:
    failure = cli_errors.describe(psycopg.OperationalError("server closed the connection unexpectedly"), None)
    assert failure is not None and "the connection to the database server at" in failure.message
