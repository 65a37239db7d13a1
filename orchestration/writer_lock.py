"""One writer at a time: a PostgreSQL advisory lock around every step that writes landing or state tables.

Dagster's concurrency pool (dagster.yaml) already keeps writing steps of runs it schedules from
overlapping; this lock is the backstop that also holds against runs of another Dagster instance, the
plain CLI and anything else on the same database. The state tables hold every district side by side and
dbt's first builds and schema changes are table-wide, so the lock is global rather than per district: a
second writer waits for the first to finish, it never interleaves with it.

The lock is a session lock on its own connection: it is released when the step ends or, if the process
dies, when PostgreSQL notices the closed connection.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import psycopg

from orchestration import database

LOCK_NAME = "attendance_sync:state_writer"
APPLICATION_PREFIX = "attendance-sync writer: "
HOLDING = "holding the state writer lock"
RELEASING = "releasing the state writer lock"


def _holders(conn: psycopg.Connection) -> list[str]:
    """Who holds the writer lock now (application names of the sessions), for a helpful wait message."""
    rows = conn.execute(
        "select coalesce(nullif(a.application_name, ''), 'pid ' || a.pid) from pg_locks l "
        "join pg_stat_activity a on a.pid = l.pid "
        "where l.locktype = 'advisory' and l.granted and l.objid = (hashtext(%s)::bigint & 4294967295)::oid "
        "and l.classid = ((hashtext(%s)::bigint >> 32) & 4294967295)::oid",
        (LOCK_NAME, LOCK_NAME)).fetchall()
    return [str(row[0]) for row in rows]


@contextlib.contextmanager
def state_writer_lock(holder: str, log: Callable[[str], None] = print) -> Iterator[float]:
    """Hold the global writer lock for the block; yields the seconds spent waiting for it."""
    conn = database.connect(autocommit=True)
    try:
        conn.execute("select set_config('application_name', %s, false)", ((APPLICATION_PREFIX + holder)[:63],))
        started = time.perf_counter()
        row = conn.execute("select pg_try_advisory_lock(hashtext(%s))", (LOCK_NAME,)).fetchone()
        if not (row and row[0]):
            holders = ", ".join(_holders(conn)) or "another session"
            log(f"waiting for the state writer lock held by {holders}")
            conn.execute("select pg_advisory_lock(hashtext(%s))", (LOCK_NAME,))
        waited = time.perf_counter() - started
        # Logged after taking and before giving up the lock, so that logged intervals of two holders never
        # overlap even though the log records are written a moment apart from the lock calls.
        log(f"{HOLDING} (waited {waited:.1f}s)")
        try:
            yield waited
        finally:
            if not conn.closed:
                log(RELEASING)
                conn.execute("select pg_advisory_unlock(hashtext(%s))", (LOCK_NAME,))
    finally:
        conn.close()
