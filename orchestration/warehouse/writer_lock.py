"""One writer at a time: a row lock, that only Write users can take, around every step that writes.

Dagster's concurrency pool (dagster.yaml) already keeps writing steps of runs it schedules from
overlapping; this lock is the backstop that also holds against runs of another Dagster instance, the
plain CLI and anything else on the same database. The state tables hold every district side by side and
dbt's first builds and schema changes are table-wide, so the lock is global rather than per district: a
second writer waits for the first to finish, it never interleaves with it.

The lock is the row `state_writer` of landing.writer_lock, locked `for no key update` by a transaction
held open on the lock's own connection for the duration of the block. Locking a row needs the UPDATE
privilege on the table, which only the write role has (an advisory lock, which any user can take, would
let a Read user block every writer). The transaction ends, and the lock with it, when the block ends or,
if the process dies, when PostgreSQL sees the closed connection; before the next writer goes on, it
waits for the sessions of a killed writer to end (they notice their dead client within seconds, see
writer_sessions.py), so no write happens outside the lock.

Other locks of the same table: `district:<code>` serialises the loads of one district (orchestration/landing/load.py),
`att_day_aggregation` the builds of that model (its materialization).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import psycopg

from orchestration.warehouse import database
from orchestration.warehouse.rights import PermissionDenied
from orchestration.warehouse.setup import WRITE_ROLE, WRITER_LOCK_TABLE, ensure_warehouse
from orchestration.warehouse.writer_sessions import Session, stopped_writer_sessions

LOCK_NAME = "state_writer"
APPLICATION_PREFIX = "attendance-sync writer: "
HOLDING = "holding the state writer lock"
RELEASING = "releasing the state writer lock"
# How long a new holder waits for the sessions of a killed writer (they end within a few seconds) before
# it terminates them, and before it gives up.
TERMINATE_AFTER_S = 10.0
STOPPED_WRITER_WAIT_S = 30.0

_INSERT_ROW = f"insert into {WRITER_LOCK_TABLE} (name) values (%s) on conflict (name) do nothing"
_LOCK_ROW = f"select name from {WRITER_LOCK_TABLE} where name = %s for no key update"
_HOLDERS = f"""
select a.pid, a.usename, coalesce(nullif(a.application_name, ''), 'pid ' || a.pid), a.state, a.xact_start
from {WRITER_LOCK_TABLE} w
join pg_locks l on l.locktype = 'transactionid' and l.mode = 'ExclusiveLock' and l.granted
                and l.transactionid = w.xmax
join pg_stat_activity a on a.pid = l.pid
where w.name = %s
"""


class WriterLockError(RuntimeError):
    pass


def district_lock_name(district_code: str) -> str:
    return f"district:{district_code}"


def lock_row(conn: psycopg.Connection, name: str) -> None:
    """Lock the named row of the lock table until the caller's transaction ends (waiting for a holder)."""
    conn.execute(_INSERT_ROW, (name,))
    conn.execute(_LOCK_ROW, (name,))


def _holders(conn: psycopg.Connection) -> list[Session]:
    """Who holds the writer lock now, for a helpful wait message."""
    rows = conn.execute(_HOLDERS, (LOCK_NAME,)).fetchall()
    return [Session(pid=row[0], user=row[1], application=row[2], state=row[3], since=row[4]) for row in rows]


def _describe_holder(holder: Session) -> str:
    since = f", since {holder.since:%Y-%m-%d %H:%M:%S %Z}" if holder.since else ""
    return f"{holder.application} (user {holder.user or '?'}, pid {holder.pid}{since})"


def _denied() -> PermissionDenied:
    return PermissionDenied(
        f"permission denied: the state writer lock ({WRITER_LOCK_TABLE}) can be taken only with the Write right "
        f"(membership in role {WRITE_ROLE}). Ask an administrator: attendance-sync rights grant USER write")


def _prepare(conn: psycopg.Connection, holder: str) -> None:
    """Name the session, keep its lock transaction from being timed out, create the lock row if missing."""
    conn.execute("select set_config('application_name', %s, false), "
                 "set_config('idle_in_transaction_session_timeout', '0', false), "
                 "set_config('lock_timeout', '0', false)", ((APPLICATION_PREFIX + holder)[:63],))
    conn.commit()
    try:
        with conn.transaction():
            exists = conn.execute("select to_regclass(%s) is not null", (WRITER_LOCK_TABLE,)).fetchone()
            if not (exists and exists[0]):
                ensure_warehouse(conn)  # a fresh database: the first writer sets it up
            conn.execute(_INSERT_ROW, (LOCK_NAME,))
    except psycopg.errors.InsufficientPrivilege:
        raise _denied() from None


def _acquire(conn: psycopg.Connection, log: Callable[[str], None]) -> None:
    try:
        conn.execute(_LOCK_ROW + " nowait", (LOCK_NAME,))
        return
    except psycopg.errors.InsufficientPrivilege:
        conn.rollback()
        raise _denied() from None
    except psycopg.errors.LockNotAvailable:
        conn.rollback()
    holders = "; ".join(_describe_holder(holder) for holder in _holders(conn))
    conn.rollback()
    log(f"waiting for the state writer lock held by {holders or 'another session'}")
    conn.execute(_LOCK_ROW, (LOCK_NAME,))


def _terminate(conn: psycopg.Connection, sessions: list[Session], log: Callable[[str], None]) -> None:
    """End busy sessions of a writer that no longer holds the lock: whatever they write is outside it."""
    log("terminating sessions of a stopped writer that are still busy: " + "; ".join(s.describe() for s in sessions))
    try:
        with conn.transaction():  # a savepoint: a refusal must not end the transaction that holds the lock
            for session in sessions:
                conn.execute("select pg_terminate_backend(%s, 5000)", (session.pid,))
    except psycopg.Error as error:
        log(f"could not terminate them: {str(error).strip()}")


def _wait_for_stopped_writers(conn: psycopg.Connection, log: Callable[[str], None]) -> None:
    """Wait until no session of an earlier, killed writer is still busy (checked under the lock).

    Such a session notices its dead client within seconds (writer_sessions.CLIENT_CHECK_INTERVAL); one
    still busy after TERMINATE_AFTER_S is terminated, and the lock is given up when even that fails.
    """
    started = time.monotonic()
    logged = terminated = False
    while sessions := stopped_writer_sessions(conn):
        waited = time.monotonic() - started
        if waited > STOPPED_WRITER_WAIT_S:
            raise WriterLockError(
                "sessions of an earlier writer are still busy after the writer lock was released: "
                + "; ".join(s.describe() for s in sessions)
                + ". Wait for them to end or stop them (select pg_terminate_backend(pid)), then try again.")
        if waited > TERMINATE_AFTER_S and not terminated:
            _terminate(conn, sessions, log)
            terminated = True
        elif not logged:
            log("waiting for the sessions of a stopped writer to end: " + "; ".join(s.describe() for s in sessions))
            logged = True
        time.sleep(0.2)


@contextlib.contextmanager
def state_writer_lock(holder: str, log: Callable[[str], None] = print) -> Iterator[float]:
    """Hold the global writer lock for the block; yields the seconds spent waiting for it."""
    conn = database.connect()
    try:
        _prepare(conn, holder)
        started = time.perf_counter()
        _acquire(conn, log)
        _wait_for_stopped_writers(conn, log)
        waited = time.perf_counter() - started
        # Logged after taking and before giving up the lock, so that logged intervals of two holders never
        # overlap even though the log records are written a moment apart from the lock calls.
        log(f"{HOLDING} (waited {waited:.1f}s)")
        try:
            yield waited
        finally:
            if not conn.closed:
                log(RELEASING)
                # A lost connection has released the lock already; its error must not hide the block's own.
                with contextlib.suppress(psycopg.OperationalError):
                    conn.rollback()
    finally:
        conn.close()
