"""One writer, for real: stopped commands stop their children, only Write users hold the writer lock,
and readers cannot stall a build forever.

The stop tests run `attendance-sync` as a subprocess against the test server, hold a table lock so that
its dbt is caught in the middle of the build, stop the command, and then check as the next writer would:
no dbt process and no busy backend of it is left, and nothing changes in state or reports afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg import sql

from orchestration.dbt import runner as dbt_runner
from orchestration.districts.registry import District, DistrictSource, write_registry
from orchestration.landing.load import load_districts
from orchestration.warehouse import database
from orchestration.warehouse import rights as tool_rights
from orchestration.warehouse.writer_lock import state_writer_lock
from orchestration.warehouse.writer_sessions import LOCK_TIMEOUT_VARIABLE, WRITING_APPLICATION
from tests.support.districts import create_district_database
from tests.support.warehouse import state_database, unique_name

AS_OF = date(2026, 9, 2)
CLI = str(Path(sys.executable).parent / "attendance-sync")
# The table the stop tests hold locked, so that the build's dbt is waiting on it when the command stops.
BLOCKED_TABLE = ("state", "school")


@dataclass(frozen=True)
class Warehouse:
    database: str
    registry: Path


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """Two sample districts loaded and built once; the tests then run builds against it."""
    sources = {code: unique_name(f"district_{code.lower()}") for code in ("D01", "D02")}
    registry = tmp_path_factory.mktemp("writer_safety") / "districts.yml"
    try:
        with state_database("test_writer_safety") as name:
            for source in sources.values():
                create_district_database(source)
            districts = [District(code, f"District {code}", DistrictSource("database", database=source))
                         for code, source in sources.items()]
            write_registry(registry, districts)
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("ATTENDANCE_REGISTRY", str(registry))
                assert all(result.ok for result in load_districts(districts))
                build = dbt_runner.run_dbt(["build"], as_of_date=AS_OF)
                assert build.success, build.failure_message
                yield Warehouse(name, registry)
    finally:
        for source in sources.values():
            database.drop_database(source)


def _cli_environment(warehouse: Warehouse) -> dict[str, str]:
    return {**os.environ, "ATTENDANCE_STATE_DATABASE": warehouse.database,
            "ATTENDANCE_REGISTRY": str(warehouse.registry)}


def _wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def _blocked_by(conn: psycopg.Connection, blocker_pid: int) -> list[int]:
    rows = conn.execute("select pid from pg_stat_activity where %s = any(pg_blocking_pids(pid))",
                        (blocker_pid,)).fetchall()
    return [row[0] for row in rows]


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def built_tables_snapshot(conn: psycopg.Connection) -> dict[str, str]:
    """Every state and reports table: its oid (a table swap changes it), row count and md5 of its rows."""
    tables = conn.execute(
        "select n.nspname, c.relname, c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname in ('state', 'reports') and c.relkind in ('r', 'p') and not c.relispartition "
        "order by 1, 2").fetchall()
    snapshot = {}
    for schema, name, oid in tables:
        row = conn.execute(sql.SQL("select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
                                   "from {} t").format(sql.Identifier(schema, name))).fetchone()
        assert row is not None
        snapshot[f"{schema}.{name}"] = f"{oid}:{row[0]}:{row[1]}"
    return snapshot


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_stopped_build_leaves_no_dbt_and_no_write_after_the_lock(
        warehouse: Warehouse, tmp_path: Path, signum: int) -> None:
    """Stop `attendance-sync build` while its dbt writes: dbt and its sessions end, the next writer gets
    the lock and sees no write of the stopped build after that (before: dbt ran on and finished the build)."""
    output = tmp_path / "cli.out"
    with database.connect() as blocker, database.connect(autocommit=True) as observer:
        blocker.execute(sql.SQL("lock table {} in access exclusive mode").format(sql.Identifier(*BLOCKED_TABLE)))
        with open(output, "wb") as out:
            cli = subprocess.Popen([CLI, "build", "--as-of-date", AS_OF.isoformat()], stdout=out,
                                   stderr=subprocess.STDOUT, env=_cli_environment(warehouse))
        try:
            waiting = _wait_for(lambda: _blocked_by(observer, blocker.info.backend_pid), 180,
                                "the build's dbt to wait for the locked table")
            children = psutil.Process(cli.pid).children(recursive=True)
            assert children, "attendance-sync build runs dbt as a child process"
            os.kill(cli.pid, signum)
            cli.wait(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
        text = output.read_text()
        if signum == signal.SIGTERM:
            assert cli.returncode == 128 + signum, text
            assert "Traceback" not in text and "stopped by SIGTERM" in text, text
        _wait_for(lambda: not _alive(children), 10, "the stopped build's dbt processes to end")
        messages: list[str] = []
        with state_writer_lock("the next writer", log=messages.append):
            # The stopped build's sessions ended by themselves (they noticed their dead client).
            assert not [m for m in messages if m.startswith("terminating")], messages
            busy = observer.execute("select pid, application_name from pg_stat_activity where pid = any(%s) "
                                    "or (application_name like %s and state <> 'idle')",
                                    (list(waiting), WRITING_APPLICATION + "%")).fetchall()
            assert busy == [], "a session of the stopped build is still busy"
            blocker.rollback()  # dbt, had it survived, would now go on with the build
            before = built_tables_snapshot(observer)
            time.sleep(6)
            assert built_tables_snapshot(observer) == before, "the stopped build wrote after the lock was released"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigterm_to_ui_stops_dagster_dev_the_webserver_and_the_daemon(warehouse: Warehouse, tmp_path: Path) -> None:
    from orchestration.dagster_defs.launch import wait_for_ui

    port = _free_port()
    env = {**_cli_environment(warehouse), "DAGSTER_HOME": str(tmp_path / "dagster")}
    with open(tmp_path / "ui.out", "wb") as out:
        ui = subprocess.Popen([CLI, "ui", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    children: list[psutil.Process] = []
    try:
        wait_for_ui(f"http://127.0.0.1:{port}", timeout_s=240)
        children = psutil.Process(ui.pid).children(recursive=True)
        names = " ".join(" ".join(child.cmdline()[:4]) for child in children)
        assert all(name in names for name in ("dagster dev", "dagster_webserver", "dagster._daemon")), names
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=90)
        _wait_for(lambda: not _alive(children), 30, "dagster dev, the webserver and the daemon to end")
    finally:
        if ui.poll() is None:
            ui.kill()
        for child in _alive(children):
            child.kill()


# Every login of the server needs a password (scram-sha-256 in pg_hba.conf).
LOGIN_PASSWORD = "login password"


@contextmanager
def read_login(prefix: str) -> Iterator[str]:
    """A login (with a password) holding the Read right only, dropped afterwards."""
    name = unique_name(prefix)
    with database.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login password {}").format(sql.Identifier(name),
                                                                        sql.Literal(LOGIN_PASSWORD)))
    try:
        tool_rights.grant(name, "read")
        yield name
    finally:
        with database.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


@pytest.fixture
def reader(state_db: str) -> Iterator[str]:
    with state_writer_lock("test setup", log=lambda _: None):
        pass  # sets up the warehouse, the lock table included
    with read_login("reader") as name:
        yield name


def connect_as(user: str, application_name: str = "analyst notebook", autocommit: bool = False) -> psycopg.Connection:
    settings = database.ensure_server()
    return psycopg.connect(settings.conninfo(), user=user, password=LOGIN_PASSWORD, application_name=application_name,
                           autocommit=autocommit)


def _lock_within(seconds: float) -> bool:
    """Whether this process can take the writer lock within `seconds` (the attempt runs in a thread)."""
    taken = threading.Event()

    def take() -> None:
        with state_writer_lock("test writer", log=lambda _: None):
            taken.set()

    worker = threading.Thread(target=take, daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    return taken.is_set()


def test_a_read_only_login_can_neither_take_nor_block_the_writer_lock(
        reader: str, make_district: Callable[..., District]) -> None:
    district = make_district("D01")
    with connect_as(reader) as analyst:
        for statement in ("select * from landing.writer_lock where name = 'state_writer' for no key update",
                          "lock table landing.writer_lock in share mode",
                          "insert into landing.writer_lock (name) values ('mine')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                analyst.execute(statement)
            analyst.rollback()
        # The keys of the advisory locks used before: taking them blocks nothing any more.
        for key in ("attendance_sync:state_writer", "attendance_sync:district:D01",
                    "attendance_sync:att_day_aggregation"):
            analyst.execute("select pg_advisory_lock(hashtext(%s))", (key,))
        analyst.commit()
        assert _lock_within(15), "a Read user's advisory lock blocked the writer lock"
        results = []
        loading = threading.Thread(target=lambda: results.extend(load_districts([district])), daemon=True)
        loading.start()
        loading.join(timeout=60)
        assert [result.ok for result in results] == [True]
    settings = database.ensure_server()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("PGHOST", settings.host), ("PGPORT", str(settings.port)),
                            ("PGDATABASE", settings.dbname), ("PGUSER", reader), ("PGPASSWORD", LOGIN_PASSWORD)):
            patch.setenv(name, value)
        with pytest.raises(tool_rights.PermissionDenied, match="only with the Write right"), \
                state_writer_lock("a reader", log=lambda _: None):
            pass


def test_the_wait_message_names_the_holder(state_db: str) -> None:
    messages: list[str] = []

    def second_writer() -> None:
        with state_writer_lock("second", log=messages.append):
            pass

    with state_writer_lock("first holder", log=lambda _: None):
        second = threading.Thread(target=second_writer, daemon=True)
        second.start()
        _wait_for(lambda: messages, 30, "the second writer to wait")
    second.join(timeout=30)
    user = database.connection_settings().user
    assert messages[0].startswith(f"waiting for the state writer lock held by attendance-sync writer: first holder "
                                  f"(user {user}, pid "), messages
    assert ", since 20" in messages[0]


def test_a_readers_open_transaction_fails_the_build_after_the_lock_timeout_naming_the_reader(
        warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    # The reports and the state tables are written row by row, which readers do not block; the Attendance
    # Aggregation Refresh swaps the aggregation's partitions, which needs the reader gone.
    with read_login("analyst") as name, connect_as(name, "analyst notebook") as analyst:
        analyst.execute("select count(*) from state.att_day_aggregation")  # the transaction stays open
        monkeypatch.setenv(LOCK_TIMEOUT_VARIABLE, "3")
        started = time.monotonic()
        build = dbt_runner.run_dbt(["build", "--select", "att_day_aggregation"], as_of_date=AS_OF, timeout=100,
                                   full_refresh=True)
        elapsed = time.monotonic() - started
        assert not build.success
        message = build.failure_message
        assert "att_day_aggregation" in message and "lock timeout" in message, message
        assert f"pid {analyst.info.backend_pid} (user {name}, application 'analyst notebook', " \
               "transaction open since 20" in message, message
        assert "on state.att_day_aggregation" in message and f"{LOCK_TIMEOUT_VARIABLE}=3" in message, message
        assert elapsed < 90, f"the build took {elapsed:.0f}s to give up"


def test_the_dagster_dbt_step_fails_after_the_lock_timeout_naming_the_reader(
        warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bound and message when the build runs as a Dagster step (dbt through dagster-dbt)."""
    import logging

    from dagster import Failure

    from orchestration.dagster_defs.dbt_assets import dbt_build_args, dbt_build_events
    from orchestration.dagster_defs.resources import dbt_resource

    with read_login("analyst") as name, connect_as(name, "analyst dashboard") as analyst:
        analyst.execute("select count(*) from state.att_day_aggregation")
        monkeypatch.setenv(LOCK_TIMEOUT_VARIABLE, "3")
        args = dbt_build_args(select=["att_day_aggregation"], as_of_date=AS_OF.isoformat(), full_refresh=True)
        with pytest.raises(Failure) as failure:
            for _ in dbt_build_events(dbt_resource(), args, holder="test step", log=logging.getLogger("test"),
                                      districts=None, context=None):
                pass
        message = failure.value.description or ""
        assert f"pid {analyst.info.backend_pid} (user {name}, application 'analyst dashboard', " \
               "transaction open since 20" in message, message


def test_a_stopped_load_rolls_back_exits_cleanly_and_frees_the_lock(
        state_db: str, make_district: Callable[..., District], tmp_path: Path) -> None:
    """SIGTERM to `attendance-sync load` while it writes: exit 143 with one message, landing as before."""
    from tests.support.warehouse import district_conn, landing_checksums

    district = make_district("D01")
    registry = Path(os.environ["ATTENDANCE_REGISTRY"])
    write_registry(registry, [district])
    assert [result.ok for result in load_districts([district])] == [True]
    with district_conn(district) as source:
        source.execute("update person set last_name = 'Changed' where person_id = 1")
        source.execute("delete from attendance where attendance_id = (select min(attendance_id) from attendance)")
    output = tmp_path / "load.out"
    with database.connect() as blocker, database.connect(autocommit=True) as observer:
        before = landing_checksums(observer)
        blocker.execute("lock table landing.attendance in access exclusive mode")
        with open(output, "wb") as out:
            cli = subprocess.Popen([CLI, "load"], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "ATTENDANCE_STATE_DATABASE": state_db})
        try:
            _wait_for(lambda: _blocked_by(observer, blocker.info.backend_pid), 60, "the load to wait for the lock")
            cli.send_signal(signal.SIGTERM)
            cli.wait(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
        text = output.read_text()
        assert cli.returncode == 128 + signal.SIGTERM, text
        assert "Traceback" not in text and "stopped by SIGTERM" in text, text
        blocker.rollback()
        assert _lock_within(10), "the stopped load still holds the writer lock"
        assert landing_checksums(observer) == before
