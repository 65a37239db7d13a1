"""Backdated changes per build of att_day_aggregation and district, read back from state.backdated_change.

The build itself measures and records them (dbt_project/macros/att_day_aggregation/
att_day_aggregation_backdated.sql): the changed attendance rows dated before the district's previous as-of
date (those a nightly job looking only at the latest day would miss) and the student-days they changed.
The CLI prints them after a resync and Dagster attaches them to the aggregation's partitions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg.rows import class_row

TABLE = "state.backdated_change"
_COLUMNS = ("invocation_id, origin, built_at, district_code, build_mode, previous_as_of_date, as_of_date, "
            "backdated_inserted, backdated_changed, backdated_deleted, backdated_rows, student_days_changed")


@dataclass(frozen=True)
class BackdatedChange:
    """One row of state.backdated_change; the counts are None when not measured (a district's first build)."""

    invocation_id: str
    origin: str
    built_at: dt.datetime
    district_code: str
    build_mode: str
    previous_as_of_date: dt.date | None
    as_of_date: dt.date
    backdated_inserted: int | None
    backdated_changed: int | None
    backdated_deleted: int | None
    backdated_rows: int | None
    student_days_changed: int | None

    @property
    def measured(self) -> bool:
        return self.backdated_rows is not None

    def describe(self) -> str:
        if not self.measured:
            return f"{self.district_code}: backdated changes not measured (first build of the district)"
        return (f"{self.district_code}: {self.backdated_rows} backdated attendance row(s) dated before "
                f"{self.previous_as_of_date} ({self.backdated_inserted} inserted, {self.backdated_changed} changed, "
                f"{self.backdated_deleted} deleted), {self.student_days_changed} student-day(s) changed")


def _exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("select to_regclass(%s) is not null", (TABLE,)).fetchone()
    return bool(row and row[0])


def backdated_changes(conn: psycopg.Connection, *, invocation_id: str | None = None,
                      since: dt.datetime | None = None) -> list[BackdatedChange]:
    """The rows of one dbt invocation, or of every build since a time, by district (the reader's rows only:
    row security applies)."""
    if not _exists(conn):
        return []
    with conn.cursor(row_factory=class_row(BackdatedChange)) as cursor:
        return cursor.execute(
            f"select {_COLUMNS} from {TABLE} where (%(invocation)s::text is null or invocation_id = %(invocation)s) "
            "and (%(since)s::timestamptz is null or built_at >= %(since)s) order by built_at, district_code",
            {"invocation": invocation_id, "since": since}).fetchall()


def latest_backdated_changes(conn: psycopg.Connection, districts: Sequence[str]) -> dict[str, BackdatedChange]:
    """The last recorded build of each of these districts (those never built are left out)."""
    if not districts or not _exists(conn):
        return {}
    with conn.cursor(row_factory=class_row(BackdatedChange)) as cursor:
        rows = cursor.execute(
            f"select distinct on (district_code) {_COLUMNS} from {TABLE} where district_code = any(%s) "
            "order by district_code, built_at desc", (list(districts),)).fetchall()
    return {row.district_code: row for row in rows}


def database_time(conn: psycopg.Connection) -> dt.datetime:
    """The server's clock, to find the builds recorded from now on (built_at is the server's clock too)."""
    row = conn.execute("select clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def summary_lines(changes: Sequence[BackdatedChange]) -> list[str]:
    """One line per district and build, as the CLI prints them."""
    return [f"backdated changes {change.describe()}" for change in changes]
