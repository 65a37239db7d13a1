"""What was written to the warehouse since a saved position: model builds, report builds, landing loads and
failed loads, each with its origin (orchestration/warehouse/run_origin.py).

The Dagster sensor that reports runless materializations (dagster_defs/warehouse_sensor.py) reads these;
nothing here needs Dagster. `WritePosition` is what the sensor keeps as its cursor: per model and
district the last build_seq seen, per district the last landing batch and failure seen, and the last
staleness verdict per district.

Positions are kept per key rather than as one high-water mark: builds of one dbt run commit in any order
(threads), so a lower build_seq may become visible after a higher one; per key it cannot, because a key's
builds (and a district's loads) are serialised by the writer lock and the district row lock.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class ModelBuild:
    """The last build of a state model for one district (district None: a report model, built whole)."""

    model: str
    district: str | None
    landing_batch_id: int | None
    built_at: dt.datetime
    as_of_date: dt.date | None
    origin: str | None
    build_seq: int

    @property
    def position_key(self) -> str:
        return f"{self.model}/{self.district}" if self.district else self.model


@dataclass(frozen=True)
class TableLoad:
    """What one committed district load did to one landing table."""

    table: str
    district: str
    batch_id: int
    loaded_at: dt.datetime
    origin: str | None
    inserted: int
    updated: int
    deleted: int
    unchanged: int

    @property
    def live_rows(self) -> int:
        """The district's live rows after the load: every source row is inserted, updated or unchanged."""
        return self.inserted + self.updated + self.unchanged


@dataclass(frozen=True)
class LoadFailure:
    failure_id: int
    district: str
    error: str
    failed_at: dt.datetime
    origin: str | None


@dataclass
class WritePosition:
    """How far the writes have been reported (the sensor's cursor). Empty: nothing reported yet."""

    builds: dict[str, int] = field(default_factory=dict)  # "<model>/<district>" or "<report model>" -> build_seq
    loads: dict[str, int] = field(default_factory=dict)  # district -> last batch_id
    failures: dict[str, int] = field(default_factory=dict)  # district -> last failure_id
    stale: dict[str, bool] = field(default_factory=dict)  # "<layer>/<district>" -> last staleness verdict
    load_ok: dict[str, bool] = field(default_factory=dict)  # district -> whether its last load attempt committed
    started: bool = False  # the first report (the current state of everything) was made

    @property
    def is_first(self) -> bool:
        return not self.started

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> WritePosition:
        """The saved position; an empty or unreadable cursor starts over (everything reported once)."""
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return cls(builds=dict(data.get("builds", {})), loads=dict(data.get("loads", {})),
                   failures=dict(data.get("failures", {})), stale=dict(data.get("stale", {})),
                   load_ok=dict(data.get("load_ok", {})), started=bool(data.get("started", False)))


def _has_columns(conn: psycopg.Connection, table: str, columns: Sequence[str]) -> bool:
    row = conn.execute(
        "select to_regclass(%s) is not null and (select count(*) from pg_attribute where attrelid = to_regclass(%s) "
        "and attname = any(%s) and not attisdropped) = %s", (table, table, list(columns), len(columns))).fetchone()
    return bool(row and row[0])


def new_model_builds(conn: psycopg.Connection, position: WritePosition) -> list[ModelBuild]:
    """Every model and report build not yet reported: state.model_build holds the last build per model and
    district, state.report_build per report and district; a build made before origins were recorded counts as
    build_seq 0 (reported once)."""
    builds: list[ModelBuild] = []
    if _has_columns(conn, "state.model_build", ("origin", "build_seq")):
        rows = conn.execute("select model_name, district_code, landing_batch_id, built_at, as_of_date, origin, "
                            "coalesce(build_seq, 0) from state.model_build order by build_seq nulls first").fetchall()
        builds += [ModelBuild(*row) for row in rows]
    if _has_columns(conn, "state.report_build", ("origin", "build_seq")):
        # A report is one asset; its rows are rebuilt district by district, so its last build is the
        # district rebuild with the highest sequence number.
        rows = conn.execute("select distinct on (report_name) report_name, null, null, built_at, as_of_date, "
                            "origin, coalesce(build_seq, 0) from state.report_build "
                            "order by report_name, build_seq desc nulls last").fetchall()
        builds += [ModelBuild(*row) for row in sorted(rows, key=lambda row: row[-1])]
    return [build for build in builds if build.build_seq > position.builds.get(build.position_key, -1)]


_LOADS_SQL = """
with progress (district_code, after) as (
    select * from unnest(%(codes)s::text[], %(after)s::bigint[])
),
latest as (
    select district_code, max(batch_id) as batch_id from landing.load_batch group by district_code
)
select log.table_name, log.district_code, log.batch_id, batch.committed_at, batch.origin,
       log.rows_inserted, log.rows_updated, log.rows_deleted, log.rows_unchanged
from landing.load_log as log
join landing.load_batch as batch on batch.batch_id = log.batch_id
join latest on latest.district_code = log.district_code
left join progress on progress.district_code = log.district_code
where case when progress.after is null then log.batch_id = latest.batch_id else log.batch_id > progress.after end
order by log.batch_id, log.table_name
"""


def new_table_loads(conn: psycopg.Connection, position: WritePosition) -> list[TableLoad]:
    """Per landing table, the loads committed since the position: for a district not reported yet only
    its latest load (the current state), else every later one, oldest first."""
    if not _has_columns(conn, "landing.load_batch", ("origin",)) or conn.execute(
            "select to_regclass('landing.load_log') is null").fetchone() == (True,):
        return []
    codes = sorted(position.loads)
    rows = conn.execute(_LOADS_SQL, {"codes": codes, "after": [position.loads[c] for c in codes]}).fetchall()
    return [TableLoad(*row) for row in rows]


_FAILURES_SQL = """
with progress (district_code, after) as (
    select * from unnest(%(codes)s::text[], %(after)s::bigint[])
),
latest as (
    select district_code, max(failure_id) as failure_id from landing.load_failure group by district_code
),
loaded as (
    select district_code, max(committed_at) as committed_at from landing.load_batch group by district_code
)
select failure.failure_id, failure.district_code, failure.error, failure.failed_at, failure.origin
from landing.load_failure as failure
join latest on latest.district_code = failure.district_code
left join loaded on loaded.district_code = failure.district_code
left join progress on progress.district_code = failure.district_code
where case when progress.after is null
        then failure.failure_id = latest.failure_id and failure.failed_at > coalesce(loaded.committed_at, '-infinity')
        else failure.failure_id > progress.after end
order by failure.failure_id
"""


def new_load_failures(conn: psycopg.Connection, position: WritePosition) -> list[LoadFailure]:
    """Failed loads since the position: for a district not reported yet only its latest failure, and only
    when no load of it committed after that failure (the district's current state)."""
    if not _has_columns(conn, "landing.load_failure", ("origin",)):
        return []
    codes = sorted(position.failures)
    rows = conn.execute(_FAILURES_SQL, {"codes": codes, "after": [position.failures[c] for c in codes]}).fetchall()
    return [LoadFailure(*row) for row in rows]


def last_failure_ids(conn: psycopg.Connection) -> dict[str, int]:
    """Per district, its latest failure id (the position after a first report)."""
    if conn.execute("select to_regclass('landing.load_failure') is null").fetchone() == (True,):
        return {}
    return {str(code): int(last) for code, last in conn.execute(
        "select district_code, max(failure_id) from landing.load_failure group by 1").fetchall()}


@dataclass(frozen=True)
class LoadOutcome:
    """A district's last load attempt: committed, or failed (with the error)."""

    ok: bool
    at: dt.datetime
    error: str | None
    origin: str | None


def last_load_outcomes(conn: psycopg.Connection) -> dict[str, LoadOutcome]:
    """Per district that was ever loaded or failed to load, its last attempt."""
    if not _has_columns(conn, "landing.load_failure", ("origin",)):
        return {}
    rows = conn.execute("""
        select distinct on (district_code) district_code, ok, at, error, origin
        from (
            select district_code, true as ok, committed_at as at, null as error, origin from landing.load_batch
            union all
            select district_code, false, failed_at, error, origin from landing.load_failure
        ) as attempts
        order by district_code, at desc""").fetchall()
    return {str(code): LoadOutcome(bool(ok), at, error, origin) for code, ok, at, error, origin in rows}


def district_row_counts(conn: psycopg.Connection, schema: str, table: str, districts: Sequence[str]) -> dict[str, int]:
    """Rows per district in a built table (0 for a district that has none); {} when the table is missing."""
    if conn.execute("select to_regclass(%s) is null", (f"{schema}.{table}",)).fetchone() == (True,):
        return {}
    query = sql.SQL("select district_code, count(*) from {} where district_code = any(%s) group by 1").format(
        sql.Identifier(schema, table))
    counts = {str(code): int(count) for code, count in conn.execute(query, (list(districts),)).fetchall()}
    return {code: counts.get(code, 0) for code in districts}


def table_row_count(conn: psycopg.Connection, schema: str, table: str) -> int | None:
    if conn.execute("select to_regclass(%s) is null", (f"{schema}.{table}",)).fetchone() == (True,):
        return None
    row = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))).fetchone()
    return int(row[0]) if row else 0


def in_time_zone(moment: dt.datetime | None, zone: str) -> str:
    """A timestamp as the state reads it: in its time zone, with the zone's abbreviation."""
    if moment is None:
        return "-"
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")
