"""Fault injection: SIGKILL a load, a build and the embedded server at random moments, then check that
nothing was left half-done.

After every kill, landing (per district) and every state and report table (per table) is either exactly
as before or exactly as a complete run leaves it, no process of the killed command is still running, and
after a kill during a build the next incremental build equals a --full-refresh. The real commands run as
subprocesses (`attendance-sync load`, `attendance-sync build run`) against demo districts on an embedded
server of this module's own (its own ATTENDANCE_HOME and port), so killing that server disturbs no other
test.

The kill moments are drawn from a seeded generator within the measured duration of a complete run,
round n of N in the n-th N-th of it. ATTENDANCE_FAULT_SEED (default 171; printed and part of every failure
message) replays a run; ATTENDANCE_FAULT_ROUNDS=N (default 2) runs 2N load kills, N build kills and N/2
(at least one) server kills during a load and during a build, e.g. ATTENDANCE_FAULT_ROUNDS=10 for a deeper
search.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql

from orchestration import settings
from orchestration.warehouse import database, embedded_postgres
from tests.support import faults
from tests.support.faults import Checksums, Key

pytestmark = pytest.mark.slow

# The default seed puts some of the default rounds' kills late in their runs, where the commands write
# (loads at 5, 32, 74 and 90% of a complete load, builds at 27 and 93%, the server at 71 and 85%).
SEED = int(os.environ.get("ATTENDANCE_FAULT_SEED", "171"))
ROUNDS = max(1, int(os.environ.get("ATTENDANCE_FAULT_ROUNDS", "2")))
# Two districts of 1,000 students in mid-year: a load takes a second or two, long enough to be hit inside
# its transactions; a build is mostly dbt's own start-up.
DEMO_DATA = ("demo-data", "--districts", "2", "--schools", "2", "--students", "1000", "--today", "2027-01-20",
             "--seed", "5")
FIRST_AS_OF = "2027-01-19"
LANDING = ("landing",)
STATE = ("state", "reports")
SKIP = ("landing.load_failure",)  # failed loads are meant to add to it
# A history of builds, written in the aggregation's own transaction (tests/dbt/test_att_day_aggregation.py
# checks that a failing build adds nothing): its rows name the run, so no other run can reproduce them.
HISTORY = ("state.backdated_change",)
SURVIVOR_WAIT = 5.0  # seconds a killed command's children get to end
QUIET_WAIT = 30.0  # seconds its database sessions get to end (a statement in flight runs on, then aborts)
EXIT_WAIT = 120.0  # seconds a command gets to give up once its server is gone
CLI = Path(sys.executable).with_name("attendance-sync")
# Settings that would name another server, or its password file: this module's server is its own.
OTHER_SERVER = (database.URL_VARIABLE, *database.PG_VARIABLES, "PGPASSFILE")


@dataclass(frozen=True)
class Cli:
    """`attendance-sync` as a subprocess against the module's server; output goes to one log per database."""

    home: Path
    env: dict[str, str]

    def start(self, *args: str, database_name: str) -> subprocess.Popen[bytes]:
        """The command in a session of its own, so that everything it spawns can be found after its death."""
        log = self.log(database_name)
        with open(log, "ab") as out:
            out.write(f"\n$ attendance-sync {' '.join(args)}\n".encode())
            out.flush()
            return subprocess.Popen([str(CLI), *args], env={**self.env, "ATTENDANCE_STATE_DATABASE": database_name},
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def log(self, database_name: str) -> Path:
        path = self.home / "logs" / f"{database_name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def run(self, *args: str, database_name: str) -> tuple[int, str]:
        """Run a command to its end: exit code and the last lines of its output."""
        code = self.start(*args, database_name=database_name).wait(timeout=600)
        lines = self.log(database_name).read_text(errors="replace").splitlines()
        return code, "\n".join(lines[-15:])

    def must_run(self, *args: str, database_name: str) -> str:
        code, tail = self.run(*args, database_name=database_name)
        assert code == 0, f"attendance-sync {' '.join(args)} failed (exit {code}):\n{tail}"
        return tail

    def timed_run(self, *args: str, database_name: str) -> float:
        started = time.perf_counter()
        self.must_run(*args, database_name=database_name)
        return time.perf_counter() - started


@dataclass(frozen=True)
class FaultWarehouse:
    """The module's server, demo districts and reference databases:
    fault_base    landing and state built, the districts changed since: a load's "before";
    fault_loaded  fault_base after a complete load: a load's "after", a build's "before"; its schema
                  fault_check holds fault_built's state and report tables, for EXCEPT comparisons;
    fault_built   fault_loaded after a complete --full-refresh build: a build's "after"."""

    cli: Cli
    as_of: str
    load_seconds: float
    build_seconds: float
    landing_before: Checksums
    landing_after: Checksums
    state_before: Checksums
    state_after: Checksums


def copy_database(source: str, target: str) -> None:
    with database.connect("postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(target)))
        conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(target), sql.Identifier(source)))


def landing_sums(database_name: str) -> Checksums:
    """Landing per district: a district's load is one transaction, whatever tables it writes."""
    with database.connect(database_name) as conn:
        return faults.checksums(conn, LANDING, group_by={"*": "district_code"}, skip=SKIP)


def state_sums(database_name: str) -> Checksums:
    """State and reports per table: each model is built in a transaction of its own, which also writes the
    model's rows of state.model_build (so those rows go with the model, see model_unit)."""
    with database.connect(database_name) as conn:
        return faults.checksums(conn, STATE, group_by={"state.model_build": "model_name",
                                                       "state.report_build": "report_name"}, skip=HISTORY)


def model_unit(key: Key) -> str:
    table, group = key
    if table == "state.report_build" and group:
        return f"reports.{group}"  # written in the report's own transaction
    return f"state.{group}" if table == "state.model_build" and group else table


def stop_server() -> None:
    pid = embedded_postgres.status().pid
    embedded_postgres.stop()
    if pid:
        faults.reap(pid)


def copy_state_tables(source: str, target: str) -> None:
    """fault_check.<schema>__<table> in `target`: a copy of every state and report table of `source`."""
    with database.connect(source) as origin, database.connect(target) as copy:
        copy.execute("drop schema if exists fault_check cascade; create schema fault_check")
        for table, columns in faults.table_columns(origin, STATE).items():
            name = sql.Identifier("fault_check", table.replace(".", "__"))
            copy.execute(sql.SQL("create table {} ({})").format(name, sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(kind)) for column, kind in columns.items())))
            with origin.cursor().copy(sql.SQL("copy (select * from {}) to stdout").format(
                    sql.Identifier(*table.split(".", 1)))) as rows, \
                    copy.cursor().copy(sql.SQL("copy {} from stdin").format(name)) as sink:
                for data in rows:
                    sink.write(data)
        copy.commit()


def differences_from_full_refresh(database_name: str) -> list[str]:
    """Per state and report table against its copy in fault_check: EXCEPT ALL both ways (run-time columns
    aside)."""
    problems = []
    with database.connect(database_name) as conn:
        for table, columns in faults.table_columns(conn, STATE).items():
            if table in HISTORY:
                continue
            names = sql.SQL(", ").join(sql.Identifier(c) for c in columns if c not in faults.run_time_columns(columns))
            current = sql.Identifier(*table.split(".", 1))
            saved = sql.Identifier("fault_check", table.replace(".", "__"))
            row = conn.execute(sql.SQL(
                "select (select count(*) from (select {c} from {a} except all select {c} from {b}) x), "
                "(select count(*) from (select {c} from {b} except all select {c} from {a}) y)").format(
                    c=names, a=current, b=saved)).fetchone()
            assert row is not None
            if row != (0, 0):
                problems.append(f"{table}: {row[0]} row(s) not in the --full-refresh result, {row[1]} row(s) of it "
                                "missing")
    return problems


def as_of_from(simulate_output: str) -> str:
    match = re.search(r"simulated date: (\d{4}-\d{2}-\d{2})", simulate_output)
    assert match, f"no simulated date in: {simulate_output}"
    return match.group(1)


def prepare(home: Path) -> FaultWarehouse:
    env = {key: value for key, value in os.environ.items() if key not in OTHER_SERVER}
    env["ATTENDANCE_REGISTRY"] = str(home / "demo" / "districts.yml")
    cli = Cli(home, env)
    cli.must_run(*DEMO_DATA, database_name="fault_base")
    cli.must_run("load", database_name="fault_base")
    cli.must_run("build", "run", "--as-of-date", FIRST_AS_OF, database_name="fault_base")
    as_of = as_of_from(cli.must_run("simulate", "--days", "2", database_name="fault_base"))
    copy_database("fault_base", "fault_loaded")
    load_seconds = cli.timed_run("load", database_name="fault_loaded")
    copy_database("fault_loaded", "fault_built")
    # "After a complete build" is a --full-refresh: so every check against it is also a check that the
    # incremental result equals a full refresh.
    build_seconds = cli.timed_run("build", "run", "--full-refresh", "--as-of-date", as_of,
                                  database_name="fault_built")
    landing_before = landing_sums("fault_base")
    landing_after = landing_sums("fault_loaded")
    state_before, state_after = state_sums("fault_loaded"), state_sums("fault_built")
    assert landing_before != landing_after and state_before != state_after, "the reference runs changed nothing"
    copy_state_tables("fault_built", "fault_loaded")
    print(f"fault injection: seed {SEED}, {ROUNDS} round(s); a complete load takes {load_seconds:.1f} s, "
          f"a complete build {build_seconds:.1f} s")
    return FaultWarehouse(cli, as_of, load_seconds, build_seconds, landing_before, landing_after, state_before,
                          state_after)


@pytest.fixture(scope="module")
def warehouse() -> Iterator[FaultWarehouse]:
    home = settings.local_dir() / "fault-injection"
    with pytest.MonkeyPatch.context() as patch:
        for name in OTHER_SERVER:
            patch.delenv(name, raising=False)
        patch.setenv("ATTENDANCE_HOME", str(home))
        patch.setenv("ATTENDANCE_EMBEDDED_PORT", str(faults.free_port()))
        if home.exists():  # an interrupted session's server and data
            stop_server()
            shutil.rmtree(home)
        adopting = faults.set_subreaper(True)
        try:
            embedded_postgres.start()
            yield prepare(home)
        finally:
            stop_server()
            if adopting:
                faults.set_subreaper(False)
            # The logs stay for a look after a failure; the next session removes them.
            shutil.rmtree(home / "pgdata", ignore_errors=True)


def rng_for(case: str) -> random.Random:
    """One stream per test, so that each test's kill moments do not depend on which tests ran before."""
    return random.Random(f"{SEED}:{case}")


# --- one round: start a command, kill something at a random moment, collect what is wrong ---------------

@dataclass
class Round:
    warehouse: FaultWarehouse
    name: str
    database_name: str
    problems: list[str]

    def problem(self, text: str) -> None:
        self.problems.append(f"{self.name}: {text}")

    def kill_command(self, args: tuple[str, ...], delay: float) -> None:
        """SIGKILL the command `delay` seconds after its start, as a scheduler's kill would."""
        process = self.warehouse.cli.start(*args, database_name=self.database_name)
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        self.check_no_survivors(process.pid)
        self.check_quiet()

    def kill_server(self, args: tuple[str, ...], delay: float) -> None:
        """SIGKILL the embedded server (postmaster and every process of it) `delay` seconds into the command,
        wait for the command to give up, and restart the server through the project's own code."""
        process = self.warehouse.cli.start(*args, database_name=self.database_name)
        time.sleep(delay)
        pid = embedded_postgres.status().pid
        if pid:
            faults.kill_postmaster(pid)
        try:
            process.wait(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:
            self.problem(f"the command still runs {EXIT_WAIT:.0f} s after its server was killed")
            process.kill()
            process.wait()
        self.check_no_survivors(process.pid)
        embedded_postgres.start()
        self.check_quiet()

    def check_no_survivors(self, session_id: int) -> None:
        deadline = time.monotonic() + SURVIVOR_WAIT
        while (left := faults.session_processes(session_id)) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            self.problem(f"still running {SURVIVOR_WAIT:.0f} s after the command was killed: {faults.describe(left)}")
            faults.kill_all([process.pid for process in left])

    def check_quiet(self) -> None:
        with database.connect("postgres", autocommit=True) as conn:
            sessions = faults.wait_until_quiet(conn, self.database_name, QUIET_WAIT)
        if sessions:
            self.problem(f"database sessions left {QUIET_WAIT:.0f} s after the kill: {'; '.join(sessions)}")

    def check_landing(self) -> str:
        """Each district's landing rows exactly as before, or as a complete load leaves them."""
        found = landing_sums(self.database_name)
        before, after = self.warehouse.landing_before, self.warehouse.landing_after
        for text in faults.judge(found, before, after, unit_of=lambda key: key[1],
                                 label=lambda unit: f"landing of district {unit}" if unit else "landing"):
            self.problem(text)
        units = sorted({key[1] for key in found.all_keys() | before.all_keys() if key[1]})
        return ", ".join(f"{unit} {faults.outcome(_keys_of(found, before, unit), found, before, after) or 'neither'}"
                         for unit in units)

    def check_state(self) -> str:
        """Landing untouched by a build; each state and report table as before or as after a complete build."""
        wh = self.warehouse
        if landing_sums(self.database_name) != wh.landing_after:
            self.problem("a build changed landing")
        found = state_sums(self.database_name)
        for text in faults.judge(found, wh.state_before, wh.state_after, unit_of=model_unit,
                                 label=lambda unit: f"table {unit}"):
            self.problem(text)
        keys = found.all_keys() | wh.state_before.all_keys()
        outcomes = [faults.outcome([key for key in keys if model_unit(key) == unit], found, wh.state_before,
                                   wh.state_after) for unit in {model_unit(key) for key in keys}]
        return f"{outcomes.count('after')} table(s) after, {outcomes.count('before')} before"

    def check_next_build(self) -> None:
        """The next incremental build succeeds and equals a --full-refresh (fault_built's, of the same landing
        and as-of date): EXCEPT ALL both ways = 0 for every state and report table."""
        code, tail = self.warehouse.cli.run("build", "run", "--as-of-date", self.warehouse.as_of,
                                            database_name=self.database_name)
        if code != 0:
            self.problem(f"the next build failed (exit {code}):\n{tail}")
            return
        for text in differences_from_full_refresh(self.database_name):
            self.problem(f"after the next incremental build, {text}")
        with database.connect(self.database_name) as conn:
            left = faults.scratch_relations(conn, STATE)
        if left:
            self.problem(f"dbt's scratch copies outlived the next build: {', '.join(left)}")


def _keys_of(found: Checksums, before: Checksums, unit: str) -> list[Key]:
    return [key for key in found.all_keys() | before.all_keys() if key[1] == unit]


def run_rounds(warehouse: FaultWarehouse, case: str, count: int, template: str, seconds: float,
               body: Callable[[Round, float], str]) -> None:
    rng = rng_for(case)
    problems: list[str] = []
    for number in range(1, count + 1):
        # Stratified: round n of N is killed in the n-th N-th of the run, so that few rounds still spread.
        delay = seconds * (number - 1 + rng.random()) / count
        name = f"{case} round {number} (seed {SEED}, kill at {delay:.2f} s)"
        database_name = f"fault_{case.replace('-', '_')}_{number}"
        copy_database(template, database_name)
        try:
            summary = body(Round(warehouse, name, database_name, problems), delay)
            print(f"{name}: {summary}")
        finally:
            with database.connect("postgres", autocommit=True) as conn:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database_name)))
    assert not problems, "\n".join(problems)


# --- the cases -----------------------------------------------------------------------------------------

def test_a_killed_load_leaves_each_district_as_before_or_completely_loaded(warehouse: FaultWarehouse) -> None:
    def body(round_: Round, delay: float) -> str:
        round_.kill_command(("load",), delay)
        return f"landing {round_.check_landing()}"

    run_rounds(warehouse, "load-kill", 2 * ROUNDS, "fault_base", warehouse.load_seconds, body)


def test_a_killed_build_stops_its_dbt_and_leaves_each_table_before_or_after(warehouse: FaultWarehouse) -> None:
    def body(round_: Round, delay: float) -> str:
        round_.kill_command(("build", "run", "--as-of-date", warehouse.as_of), delay)
        summary = round_.check_state()
        round_.check_next_build()
        return summary

    run_rounds(warehouse, "build-kill", ROUNDS, "fault_loaded", warehouse.build_seconds, body)


def test_a_server_killed_during_a_load_loses_no_committed_district(warehouse: FaultWarehouse) -> None:
    def body(round_: Round, delay: float) -> str:
        round_.kill_server(("load",), delay)
        return f"landing {round_.check_landing()}"

    run_rounds(warehouse, "server-load", max(1, ROUNDS // 2), "fault_base", warehouse.load_seconds, body)


def test_a_server_killed_during_a_build_leaves_each_table_before_or_after(warehouse: FaultWarehouse) -> None:
    def body(round_: Round, delay: float) -> str:
        round_.kill_server(("build", "run", "--as-of-date", warehouse.as_of), delay)
        summary = round_.check_state()
        round_.check_next_build()
        return summary

    run_rounds(warehouse, "server-build", max(1, ROUNDS // 2), "fault_loaded", warehouse.build_seconds, body)
