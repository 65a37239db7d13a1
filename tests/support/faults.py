"""Fault injection: kill commands and the embedded server for real, and judge what they leave behind.

Processes are killed with SIGKILL, as the kernel's OOM killer or a power cut would, so nothing of the
project's own cleanup runs. Tables are compared by checksums of their ordered rows: exactly (nothing
may have changed) or with the columns that record when or how long something ran left out (a second,
complete run cannot repeat those).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass

import psutil
import psycopg
from psycopg import sql

PR_SET_CHILD_SUBREAPER = 36
# Server processes a killed command may have started (pg_ctl daemonizes them); they are not its writers.
SERVER_PROCESS_NAMES = frozenset({"postgres", "pg_ctl"})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def set_subreaper(enabled: bool) -> bool:
    """Adopt (and so reap at once) orphaned descendants: the daemonized postmaster, a killed command's
    children. Where PID 1 reaps orphans late (some containers) or never, a killed postmaster stays a zombie
    for a while, which still looks like a live `postgres` to the project's restart. Linux only; returns
    whether it took effect."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, int(enabled), 0, 0, 0) == 0)
    return False


def reap(pid: int) -> None:
    """Collect a dead child of this process (an adopted orphan included); no-op for anyone else's."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait up to `timeout` seconds for the processes to end; return those still running."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        for pid in pending:
            reap(pid)
        pending = [pid for pid in pending if not is_gone(pid)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.1)


def session_processes(session_id: int) -> list[psutil.Process]:
    """Live processes of a session (a command started with start_new_session=True and all it spawned),
    the server processes it may have started excepted."""
    found = []
    for process in psutil.process_iter(["name", "status"]):
        with contextlib.suppress(OSError, psutil.Error):
            if (os.getsid(process.pid) == session_id and process.info["status"] != psutil.STATUS_ZOMBIE
                    and process.info["name"] not in SERVER_PROCESS_NAMES):
                found.append(process)
    return found


def describe(processes: Iterable[psutil.Process]) -> str:
    shown = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            shown.append(f"pid {process.pid} ({' '.join(process.cmdline())[:160]})")
    return "; ".join(shown)


def kill_all(pids: Iterable[int], timeout: float = 10.0) -> None:
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(pids, timeout)


def kill_postmaster(pid: int, timeout: float = 30.0) -> None:
    """A crash of the whole server: SIGKILL the postmaster, then every process it had started."""
    children = [child.pid for child in psutil.Process(pid).children(recursive=True)]
    kill_all([pid, *children], timeout)


def wait_until_quiet(conn: psycopg.Connection, dbname: str, timeout: float) -> list[str]:
    """Wait up to `timeout` seconds until no other client session uses `dbname`; return those left
    (application name, state and query), which are then terminated."""
    deadline = time.monotonic() + timeout
    query = ("select pid, coalesce(nullif(application_name, ''), 'unnamed') || ' (' || coalesce(state, '?') "
             "|| ': ' || left(query, 80) || ')' from pg_stat_activity "
             "where datname = %s and pid <> pg_backend_pid() and backend_type = 'client backend'")
    while True:
        rows = conn.execute(query, (dbname,)).fetchall()
        if not rows:
            return []
        if time.monotonic() >= deadline:
            for pid, _ in rows:
                conn.execute("select pg_terminate_backend(%s)", (pid,))
            return [str(text) for _, text in rows]
        time.sleep(0.2)


# --- checksums --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sums:
    """Row count and md5 of the ordered rows: all columns (exact) and without run-time columns (normalized)."""

    exact: str
    normalized: str


MISSING = Sums("no table", "no table")
EMPTY = Sums("0:", "0:")
Key = tuple[str, str]  # (schema.table, value of its group column, or "" for an ungrouped table)


@dataclass(frozen=True)
class Checksums:
    tables: frozenset[str]
    sums: Mapping[Key, Sums]

    def get(self, key: Key) -> Sums:
        return self.sums.get(key, EMPTY) if key[0] in self.tables else MISSING

    def all_keys(self) -> set[Key]:
        grouped = {table for table, _ in self.sums}
        return set(self.sums) | {(table, "") for table in self.tables - grouped}


def run_time_columns(columns: Mapping[str, str]) -> list[str]:
    """Columns that record when or how long something ran, or which build it was: a second run cannot repeat
    their values."""
    return [name for name, kind in columns.items()
            if kind == "timestamp with time zone" or name in ("duration_ms", "build_seq")]


# dbt's scratch copies of a table materialization: the old table renamed to <name>__dbt_backup is dropped
# only after dbt's commit, so a crash in between leaves it behind. They are no state data (the next build
# of that model drops them, see scratch_relations), so the before/after judgement leaves them out.
DBT_SCRATCH = r"__dbt_(backup|tmp)$"


def scratch_relations(conn: psycopg.Connection, schemas: Iterable[str]) -> list[str]:
    """dbt's scratch copies left in the schemas."""
    rows = conn.execute(
        "select n.nspname || '.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = any(%s) and c.relkind in ('r', 'p', 'v') and c.relname ~ %s order by 1",
        (list(schemas), DBT_SCRATCH)).fetchall()
    return [str(row[0]) for row in rows]


def table_columns(conn: psycopg.Connection, schemas: Iterable[str]) -> dict[str, dict[str, str]]:
    """schema.table -> column -> type, for the tables (not partitions, not dbt's scratch copies) of the schemas."""
    rows = conn.execute(
        "select n.nspname || '.' || c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
        "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped "
        "where n.nspname = any(%s) and c.relkind in ('r', 'p') and not c.relispartition and c.relname !~ %s "
        "order by 1, a.attnum", (list(schemas), DBT_SCRATCH)).fetchall()
    tables: dict[str, dict[str, str]] = {}
    for table, column, kind in rows:
        tables.setdefault(table, {})[column] = kind
    return tables


def checksums(conn: psycopg.Connection, schemas: Iterable[str], *, group_by: Mapping[str, str] | None = None,
              skip: Iterable[str] = ()) -> Checksums:
    """Sums of every table of the schemas. `group_by` maps a table (or "*": every table having that column)
    to a column: one sum per value of it, so that e.g. each district's rows form a unit of their own."""
    group_by = group_by or {}
    tables = {table: columns for table, columns in table_columns(conn, schemas).items() if table not in skip}
    sums: dict[Key, Sums] = {}
    for table, columns in tables.items():
        column = group_by.get(table, group_by.get("*"))
        volatile = run_time_columns(columns)
        statement = sql.SQL(
            "select {group}, count(*) || ':' || md5(string_agg(t::text, '|' order by t::text)), "
            "count(*) || ':' || md5(string_agg((to_jsonb(t) - %(volatile)s::text[])::text, '|' "
            "order by (to_jsonb(t) - %(volatile)s::text[])::text)) "
            "from {table} t group by 1").format(
                group=sql.SQL("t.{}").format(sql.Identifier(column)) if column in columns else sql.SQL("''"),
                table=sql.Identifier(*table.split(".", 1)))
        for unit, exact, normalized in conn.execute(statement, {"volatile": volatile}).fetchall():
            sums[(table, str(unit))] = Sums(str(exact), str(normalized))
    return Checksums(frozenset(tables), sums)


def outcome(keys: Iterable[Key], found: Checksums, before: Checksums, after: Checksums) -> str | None:
    """"before" when every key is exactly as before, "after" when every key is as a complete run left it
    (run-time columns aside), else None."""
    keys = list(keys)
    if all(found.get(key) == before.get(key) for key in keys):
        return "before"
    if all(found.get(key).normalized == after.get(key).normalized for key in keys):
        return "after"
    return None


def judge(found: Checksums, before: Checksums, after: Checksums, unit_of: Callable[[Key], Hashable],
          label: Callable[[Hashable], str]) -> list[str]:
    """One problem per unit (a district, a table) that is neither as before nor as after a complete run."""
    units: dict[Hashable, list[Key]] = {}
    for key in found.all_keys() | before.all_keys() | after.all_keys():
        units.setdefault(unit_of(key), []).append(key)
    problems = []
    for unit, keys in sorted(units.items(), key=lambda item: str(item[0])):
        if outcome(keys, found, before, after) is not None:
            continue
        as_before = {key[0] for key in keys if found.get(key) == before.get(key)}
        as_after = {key[0] for key in keys if found.get(key).normalized == after.get(key).normalized}
        neither = sorted({key[0] for key in keys} - as_before - as_after)
        detail = (f"{', '.join(neither)} match neither" if neither else
                  f"{', '.join(sorted(as_after - as_before))} as after, {', '.join(sorted(as_before - as_after))} "
                  "as before")
        problems.append(f"{label(unit)} is neither as before nor as after a complete run: {detail}")
    return problems
