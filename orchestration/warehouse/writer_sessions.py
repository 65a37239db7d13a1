"""The database sessions that write landing and state tables: how they are marked and bounded.

  - Marked: their application_name starts with WRITING_APPLICATION (dbt's through the profile's
    `application_name`, the loader's set on its connection), so that a writer that has just taken the
    writer lock can wait for the sessions of a writer that was killed (`stopped_writer_sessions`).
  - They notice a dead client: `client_connection_check_interval` makes PostgreSQL check the client's
    socket while a statement runs and cancel the statement when the client is gone, so a backend of a
    killed dbt or loader stops within seconds instead of finishing (and committing) its statement.
  - dbt's sessions wait at most ATTENDANCE_LOCK_TIMEOUT_SECONDS for a table lock (`lock_timeout`): a
    reader's open transaction on a report table then fails the build after a bounded wait, and
    `describe_lock_timeouts` names the sessions that held the lock.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

WRITING_APPLICATION = "attendance-sync writing"
# Read by profiles/profiles.yml as dbt's application_name.
DBT_APPLICATION_VARIABLE = "ATTENDANCE_DBT_APPLICATION_NAME"
DBT_APPLICATION = f"{WRITING_APPLICATION}: dbt"
LOADER_APPLICATION = f"{WRITING_APPLICATION}: load"
CLIENT_CHECK_INTERVAL = "2s"
LOCK_TIMEOUT_VARIABLE = "ATTENDANCE_LOCK_TIMEOUT_SECONDS"
DEFAULT_LOCK_TIMEOUT_SECONDS = 120.0
LOCK_TIMEOUT_TEXT = "canceling statement due to lock timeout"


class LockTimeoutSettingError(ValueError):
    pass


def lock_timeout_seconds(env: Mapping[str, str] | None = None) -> float:
    """ATTENDANCE_LOCK_TIMEOUT_SECONDS (default 120): how long a build waits for a table lock."""
    raw = (env if env is not None else os.environ).get(LOCK_TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_LOCK_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise LockTimeoutSettingError(
            f"{LOCK_TIMEOUT_VARIABLE}={raw!r} is not a number of seconds between 0 (exclusive) and 86400")
    return value


def dbt_session_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables for a writing dbt process: PGOPTIONS (libpq) with the session settings, and the mark."""
    base = (env if env is not None else os.environ).get("PGOPTIONS", "")
    milliseconds = round(lock_timeout_seconds(env) * 1000)
    options = f"-c lock_timeout={milliseconds} -c client_connection_check_interval={CLIENT_CHECK_INTERVAL}"
    return {"PGOPTIONS": f"{base} {options}".strip(), DBT_APPLICATION_VARIABLE: DBT_APPLICATION}


def mark_writer_session(conn: psycopg.Connection, application: str = LOADER_APPLICATION) -> None:
    """Mark a writing connection and make it notice a dead client (outside any transaction)."""
    conn.execute("select set_config('application_name', %s, false), "
                 "set_config('client_connection_check_interval', %s, false)",
                 (application[:63], CLIENT_CHECK_INTERVAL))
    if not conn.autocommit:
        conn.commit()


@dataclass(frozen=True)
class Session:
    pid: int
    user: str | None
    application: str | None
    state: str | None
    since: datetime | None
    lock: str | None = None

    def describe(self) -> str:
        since = f"transaction open since {self.since:%Y-%m-%d %H:%M:%S %Z}" if self.since else "since unknown"
        held = f", holding {self.lock}" if self.lock else ""
        state = f"{self.state}, " if self.state and self.state != "idle in transaction" else ""
        return (f"pid {self.pid} (user {self.user or '?'}, application {self.application or '(none)'!r}, "
                f"{state}{since}{held})")


def stopped_writer_sessions(conn: psycopg.Connection) -> list[Session]:
    """Writing sessions still busy (running, or in a transaction) other than this connection's own.

    While the caller holds the writer lock, any such session belongs to a writer that no longer holds
    it: one that was killed and whose backend has not yet noticed.
    """
    # Within a transaction pg_stat_activity is a snapshot taken at its first use: drop it to see now.
    conn.execute("select pg_stat_clear_snapshot()")
    rows = conn.execute(
        "select pid, usename, application_name, state, xact_start from pg_stat_activity "
        "where datname = current_database() and pid <> pg_backend_pid() and application_name like %s "
        "and state is distinct from 'idle'", (WRITING_APPLICATION + "%",)).fetchall()
    return [Session(pid=row[0], user=row[1], application=row[2], state=row[3], since=row[4]) for row in rows]


_RELATION = re.compile(r'"([^"]+)"\."([^"]+)"$')


def _schema_and_name(relation_name: str) -> tuple[str, str] | None:
    match = _RELATION.search(relation_name.strip())
    return (match.group(1), match.group(2)) if match else None


_HOLDERS = """
select a.pid, a.usename, a.application_name, a.state, a.xact_start,
       string_agg(distinct l.mode || ' on ' || l.relation::regclass::text, ', ')
from pg_locks l
join pg_stat_activity a on a.pid = l.pid
where l.granted and l.locktype = 'relation' and l.database = (select oid from pg_database
                                                              where datname = current_database())
  and l.pid <> pg_backend_pid() and a.application_name not like %(writing)s
  and {relations}
group by 1, 2, 3, 4, 5
order by a.xact_start nulls last, a.pid
"""

# The relation and its partitions (a report table, or att_day_aggregation and its district partitions).
_OF_RELATIONS = sql.SQL("(l.relation = any(%(relations)s::regclass[]) or l.relation in ("
                        "select inhrelid from pg_inherits where inhparent = any(%(relations)s::regclass[])))")
# Anything the build writes: when the failing relation is not known or nobody holds it.
_OF_BUILT_SCHEMAS = sql.SQL("l.relation in (select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                            "where n.nspname in ('state', 'reports'))")


def _exists(conn: psycopg.Connection, relation: str) -> bool:
    row = conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()
    return bool(row and row[0])


def lock_holders(conn: psycopg.Connection, relation_names: Iterable[str]) -> list[Session]:
    """Sessions other than writers holding locks on the relations (or, failing that, on state/reports)."""
    relations = [sql.Identifier(*parts).as_string(conn) for name in relation_names
                 if (parts := _schema_and_name(name)) is not None]
    relations = [name for name in relations if _exists(conn, name)]
    params = {"relations": relations, "writing": WRITING_APPLICATION + "%"}
    for condition in ([_OF_RELATIONS] if relations else []) + [_OF_BUILT_SCHEMAS]:
        rows = conn.execute(sql.SQL(_HOLDERS).format(relations=condition), params).fetchall()
        if rows:
            return [Session(pid=row[0], user=row[1], application=row[2], state=row[3], since=row[4], lock=row[5])
                    for row in rows]
    return []


def describe_lock_timeouts(conn: psycopg.Connection, failed: Mapping[str, str | None]) -> str:
    """For failed nodes (unique id -> relation name) that hit the lock timeout: who held the lock, or ''."""
    if not failed:
        return ""
    holders = lock_holders(conn, [name for name in failed.values() if name])
    waited = f"{LOCK_TIMEOUT_VARIABLE}={lock_timeout_seconds():g}"
    nodes = ", ".join(failed)
    if not holders:
        return (f"{nodes} waited longer than {waited} seconds for a table lock; the session that held it has "
                "ended since. Run the build again.")
    sessions = "\n".join(f"  {holder.describe()}" for holder in holders)
    return (f"{nodes} waited longer than {waited} seconds for a table lock held by:\n{sessions}\n"
            "End those transactions (commit or rollback, or pg_terminate_backend(pid)) and run the build again.")
