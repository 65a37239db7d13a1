"""att_day_aggregation: an incremental run equals a full recompute, after any sequence of district changes
and as-of dates (DOMAIN.md, "Aggregated attendance"), on a real PostgreSQL with the real dbt project.

Landing loads are mimicked by LandingLoad (a load_batch row; rows inserted, updated with their previous
image in landing.superseded_row, or flagged deleted), so a test controls exactly which batch carries
which change. After every aggregation run the table is compared, EXCEPT both ways, with the reference
statement (benchmarks/reference_att_day_aggregation.sql) on the same state tables and as-of date; the
reference itself is checked against a --full-refresh here and in test_att_day_aggregation.py.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from orchestration import settings as project_settings
from orchestration.dbt import runner as dbt_runner
from orchestration.districts.contract import TABLES, table
from orchestration.warehouse import database
from orchestration.warehouse.setup import ensure_partition
from tests.conftest import state_database

REFERENCE_SQL = (project_settings.PROJECT_ROOT / "benchmarks" / "reference_att_day_aggregation.sql").read_text()
FIRST_DAY = dt.date(2026, 9, 1)
SCHOOL_DAYS = 14
Row = dict[str, Any]


# --- mimicked landing loads ----------------------------------------------------------------------------

class LandingLoad:
    """One district load into landing, as orchestration/landing/load.py records it: a landing.load_batch
    row, every changed row stamped with its batch id, the previous image of every updated row (a revived
    deleted row included) in landing.superseded_row, vanished rows flagged _deleted. Commit to publish."""

    def __init__(self, conn: psycopg.Connection, district_code: str) -> None:
        self.conn, self.district_code = conn, district_code
        for spec in TABLES:
            ensure_partition(conn, spec.name, district_code)
        row = conn.execute("insert into landing.load_batch (district_code, started_at) values (%s, now()) "
                           "returning batch_id", (district_code,)).fetchone()
        assert row is not None
        self.batch_id = int(row[0])

    def upsert(self, table_name: str, values: Row) -> None:
        spec = table(table_name)
        target = sql.Identifier("landing", table_name)
        key = values[spec.primary_key]
        names = spec.column_names
        current = self.conn.execute(sql.SQL(
            "select to_jsonb(l), l._deleted, row({cols}) is not distinct from row({params}) from {target} l "
            "where l.district_code = %s and l.{pk} = %s").format(
                cols=sql.SQL(", ").join(sql.Identifier(n) for n in names),
                params=sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(spec.column(n).type)) for n in names),
                target=target, pk=sql.Identifier(spec.primary_key)),
            [*(values.get(n) for n in names), self.district_code, key]).fetchone()
        if current is None:
            self.conn.execute(sql.SQL(
                "insert into {target} (district_code, {cols}, _batch_id, _changed_at, _deleted) "
                "values (%s, {params}, %s, now(), false)").format(
                    target=target, cols=sql.SQL(", ").join(sql.Identifier(n) for n in names),
                    params=sql.SQL(", ").join(sql.Placeholder() for _ in names)),
                [self.district_code, *(values.get(n) for n in names), self.batch_id])
            return
        old_image, deleted, same = current
        if same and not deleted:
            return
        self.conn.execute(
            "insert into landing.superseded_row (batch_id, district_code, table_name, row_id, old_row) "
            "values (%s, %s, %s, %s, %s)", (self.batch_id, self.district_code, table_name, key, Jsonb(old_image)))
        self.conn.execute(sql.SQL(
            "update {target} set ({cols}) = row({params}), _batch_id = %s, _changed_at = now(), _deleted = false "
            "where district_code = %s and {pk} = %s").format(
                target=target, cols=sql.SQL(", ").join(sql.Identifier(n) for n in names),
                params=sql.SQL(", ").join(sql.Placeholder() for _ in names), pk=sql.Identifier(spec.primary_key)),
            [*(values.get(n) for n in names), self.batch_id, self.district_code, key])

    def delete(self, table_name: str, key: int) -> None:
        spec = table(table_name)
        self.conn.execute(sql.SQL(
            "update {target} set _deleted = true, _batch_id = %s, _changed_at = now() "
            "where district_code = %s and {pk} = %s and not _deleted").format(
                target=sql.Identifier("landing", table_name), pk=sql.Identifier(spec.primary_key)),
            (self.batch_id, self.district_code, key))

    def commit(self) -> None:
        self.conn.execute("update landing.load_batch set committed_at = clock_timestamp() where batch_id = %s",
                          (self.batch_id,))
        self.conn.commit()


# --- a small district, and the changes a district makes -------------------------------------------------

def school_days() -> list[dt.date]:
    days, day = [], FIRST_DAY
    while len(days) < SCHOOL_DAYS:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def saturday(day: dt.date) -> dt.date:
    return day + dt.timedelta(days=5 - day.weekday())


@dataclass
class District:
    """A district's current source rows (what its next load sends), generated from a seed."""

    code: str
    rng: random.Random
    rows: dict[str, dict[int, Row]] = field(default_factory=lambda: {spec.name: {} for spec in TABLES})
    next_id: int = 10_000

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def put(self, table_name: str, row: Row) -> None:
        self.rows[table_name][row[table(table_name).primary_key]] = row

    def ids(self, table_name: str) -> list[int]:
        return sorted(self.rows[table_name])


def small_district(code: str, seed: int, students: int = 8) -> District:
    """Two calendars (one with its own thresholds), three period schedules with a lunch period, a
    non-instruction day, a no-attendance day and a day without schedule; overlapping, withdrawn, N and
    no-show enrollments; excuse codes of every kind; random attendance with duplicates."""
    district = District(code, random.Random(seed))
    stamp = dt.datetime(2026, 8, 1, 8, 0)
    district.put("school", {"school_id": 1, "number": "1", "name": "School 1", "state_school_code": "S1"})
    district.put("school_year", {"end_year": 2027, "label": "2026-27", "active": True})
    for calendar_id, whole, half in ((10, None, None), (20, 150, 60)):
        district.put("calendar", {
            "calendar_id": calendar_id, "school_id": 1, "end_year": 2027, "name": f"Calendar {calendar_id}",
            "start_date": dt.date(2026, 8, 24), "end_date": dt.date(2027, 5, 28), "whole_day_absence_minutes": whole,
            "half_day_absence_minutes": half, "exclude": False, "modified_date": stamp})
    periods = {11: [(60, False), (60, False), (30, True), (60, False)], 12: [(45, False), (45, False)],
               21: [(50, False), (50, False), (50, False)]}
    for schedule_id, minutes in periods.items():
        district.put("period_schedule", {"period_schedule_id": schedule_id, "calendar_id": schedule_id // 10 * 10,
                                         "name": f"Schedule {schedule_id}"})
        for seq, (period_minutes, non_instructional) in enumerate(minutes, start=1):
            district.put("period", {
                "period_id": schedule_id * 10 + seq, "period_schedule_id": schedule_id, "name": f"P{seq}",
                "seq": seq, "start_time": None, "end_time": None, "period_minutes": period_minutes,
                "non_instructional": non_instructional})
    for calendar_id in (10, 20):
        for number, day in enumerate(school_days()):
            schedule = calendar_id + 1 if number % 5 else (12 if calendar_id == 10 else 21)
            district.put("day", {
                "day_id": calendar_id * 100 + number, "calendar_id": calendar_id, "date": day,
                "period_schedule_id": None if (calendar_id, number) == (10, 6) else schedule,
                "instruction": (calendar_id, number) != (10, 3), "attendance": (calendar_id, number) != (20, 4),
                "comments": None, "modified_date": stamp})
    for excuse_id, calendar_id, status, excuse in ((31, 10, "A", "E"), (32, 10, "T", "U"), (33, 10, "A", "X"),
                                                   (34, 10, "A", ""), (41, 20, "A", "U"), (42, 20, "A", "E")):
        district.put("attendance_excuse", {
            "excuse_id": excuse_id, "calendar_id": calendar_id, "code": f"C{excuse_id}", "description": None,
            "status": status, "excuse": excuse, "state_code": None, "active": True, "modified_date": stamp})
    days = school_days()
    for person_id in range(1, students + 1):
        district.put("person", {"person_id": person_id, "state_id": f"{code}-{person_id}",
                                "student_number": str(person_id), "last_name": "L", "first_name": "F",
                                "birth_date": None, "gender": None, "modified_date": stamp})
        calendar_id = 10 if person_id % 3 else 20
        enrollment = {"enrollment_id": person_id * 10, "person_id": person_id, "calendar_id": calendar_id,
                      "grade": "05", "start_date": dt.date(2026, 8, 24), "end_date": None, "service_type": "P",
                      "no_show": False, "modified_date": stamp}
        if person_id == 4:  # withdraws, then re-enrolls in the other calendar
            enrollment["end_date"] = days[7]
            district.put("enrollment", {**enrollment, "enrollment_id": 41, "calendar_id": 20,
                                        "start_date": days[8], "end_date": None})
        district.put("enrollment", enrollment)
        if person_id == 2:  # an overlapping secondary enrollment
            district.put("enrollment", {**enrollment, "enrollment_id": 21, "service_type": "S",
                                        "start_date": days[2], "end_date": days[9]})
        if person_id == 5:  # special-ed services only in the other calendar, and a no-show
            district.put("enrollment", {**enrollment, "enrollment_id": 51, "calendar_id": 20, "service_type": "N"})
            district.put("enrollment", {**enrollment, "enrollment_id": 52, "calendar_id": 20, "no_show": True})
    for _ in range(students * 4):
        add_attendance(district)
    for person_id, day, excuse in ((1, days[1], "E"), (2, days[2], "")):  # whole days absent
        for period_id in (111, 112, 114):
            counted_row(district, person_id, day, period_id=period_id, excuse=excuse)
    return district


def add_attendance(district: District, day: dt.date | None = None) -> None:
    rng = district.rng
    enrollment = district.rows["enrollment"][rng.choice(district.ids("enrollment"))]
    calendar_id = enrollment["calendar_id"]
    day = day or rng.choice(school_days())
    schedules = [11, 12] if calendar_id == 10 else [21]
    period_id = rng.choice([p for p in district.ids("period") if p // 10 in schedules] + [213, 113])
    excuse_ids = [e for e in district.ids("attendance_excuse") if district.rows["attendance_excuse"][e]["calendar_id"]
                  == calendar_id]
    district.put("attendance", {
        "attendance_id": district.new_id(), "person_id": enrollment["person_id"], "calendar_id": calendar_id,
        "period_id": period_id, "date": day, "status": rng.choice("AATE"), "excuse": rng.choice(["E", "U", "X", ""]),
        "excuse_id": rng.choice([None, None, *excuse_ids]),
        "present_minutes": rng.choice([None, None, 0, 10, 30, 45, 55, 70]), "comments": None,
        "modified_date": dt.datetime.combine(day, dt.time(9)) + dt.timedelta(minutes=rng.randrange(600))})


def counted_row(district: District, person_id: int, day: dt.date, **values: Any) -> Row:
    """An absence of a calendar-10 student on period 111 (instructional on schedule 11), added to the district."""
    row = {"attendance_id": district.new_id(), "person_id": person_id, "calendar_id": 10, "period_id": 111,
           "date": day, "status": "A", "excuse": "U", "excuse_id": None, "present_minutes": None, "comments": None,
           "modified_date": dt.datetime.combine(day, dt.time(9)), **values}
    district.put("attendance", row)
    return row


CHANGES = ("attendance_added", "attendance_corrected", "attendance_moved", "attendance_deleted",
           "attendance_revived", "enrollment_changed", "enrollment_added", "excuse_reclassified", "day_changed",
           "period_changed", "calendar_changed")


def apply_change(district: District, change: str) -> None:
    """One kind of district change, on the district's source rows (the next load carries it)."""
    rng = district.rng
    rows = district.rows
    if change == "attendance_added":
        add_attendance(district)
    elif change == "attendance_corrected" and rows["attendance"]:  # a backdated correction
        row = rows["attendance"][rng.choice(district.ids("attendance"))]
        field_name = rng.choice(["status", "excuse", "present_minutes", "excuse_id", "period_id"])
        row[field_name] = {"status": rng.choice("ATE"), "excuse": rng.choice(["E", "U", "X", ""]),
                           "present_minutes": rng.choice([None, 5, 50]), "excuse_id": rng.choice([None, 31, 34, 41]),
                           "period_id": rng.choice([111, 112, 113, 114, 121, 211, 212])}[field_name]
        row["modified_date"] += dt.timedelta(hours=1)
    elif change == "attendance_moved" and rows["attendance"]:
        row = rows["attendance"][rng.choice(district.ids("attendance"))]
        row["date"] = rng.choice(school_days())
        row["person_id"] = rng.choice([row["person_id"], rng.randint(1, 8)])
    elif change == "attendance_deleted" and rows["attendance"]:
        deleted = rows["attendance"].pop(rng.choice(district.ids("attendance")))
        rows.setdefault("_deleted_attendance", {})[deleted["attendance_id"]] = deleted
    elif change == "attendance_revived" and rows.get("_deleted_attendance"):
        revived = rows["_deleted_attendance"].pop(rng.choice(sorted(rows["_deleted_attendance"])))
        revived["date"] = rng.choice(school_days())
        district.put("attendance", revived)
    elif change == "enrollment_changed":
        row = rows["enrollment"][rng.choice(district.ids("enrollment"))]
        field_name = rng.choice(["end_date", "start_date", "no_show", "service_type", "calendar_id"])
        row[field_name] = {"end_date": rng.choice([None, *school_days()]),
                           "start_date": rng.choice([dt.date(2026, 8, 24), *school_days()]),
                           "no_show": not row["no_show"], "service_type": rng.choice("PSN"),
                           "calendar_id": rng.choice([10, 20])}[field_name]
    elif change == "enrollment_added":
        person_id = rng.randint(1, 8)
        district.put("enrollment", {
            "enrollment_id": district.new_id(), "person_id": person_id, "calendar_id": rng.choice([10, 20]),
            "grade": "05", "start_date": rng.choice(school_days()), "end_date": rng.choice([None, *school_days()]),
            "service_type": rng.choice("PPS"), "no_show": False, "modified_date": dt.datetime(2026, 9, 15)})
    elif change == "excuse_reclassified":
        row = rows["attendance_excuse"][rng.choice(district.ids("attendance_excuse"))]
        row["status"], row["excuse"] = rng.choice("ATE"), rng.choice(["E", "U", "X", ""])
    elif change == "day_changed":
        row = rows["day"][rng.choice(district.ids("day"))]
        field_name = rng.choice(["instruction", "attendance", "period_schedule_id", "date"])
        if field_name == "date":  # to its week's Saturday, a date no other day of the calendar has
            row["date"] = saturday(row["date"])
        elif field_name == "period_schedule_id":
            row[field_name] = rng.choice([None, 11, 12, 21])
        else:
            row[field_name] = not row[field_name]
    elif change == "period_changed":
        row = rows["period"][rng.choice(district.ids("period"))]
        field_name = rng.choice(["period_minutes", "non_instructional"])
        row[field_name] = rng.choice([20, 45, 60]) if field_name == "period_minutes" else not row[field_name]
    elif change == "calendar_changed":
        row = rows["calendar"][rng.choice([10, 20])]
        row["whole_day_absence_minutes"] = rng.choice([None, 90, 200])
        row["half_day_absence_minutes"] = rng.choice([None, 30, 100])


def load(conn: psycopg.Connection, district: District) -> int:
    """Send the district's current rows as one landing load (like the loader's diff); return the batch id."""
    batch = LandingLoad(conn, district.code)
    for spec in TABLES:
        current = district.rows[spec.name]
        for row in current.values():
            batch.upsert(spec.name, row)
        live = conn.execute(sql.SQL("select {pk} from landing.{t} where district_code = %s and not _deleted").format(
            pk=sql.Identifier(spec.primary_key), t=sql.Identifier(spec.name)), (district.code,)).fetchall()
        for (key,) in live:
            if key not in current:
                batch.delete(spec.name, key)
    batch.commit()
    return batch.batch_id


# --- the warehouse, dbt runs and the comparison ----------------------------------------------------------

@dataclass
class Warehouse:
    database: str
    conn: psycopg.Connection

    def register(self, *codes: str) -> None:
        for code in codes:
            self.conn.execute("insert into landing.district (district_code, name, source) values (%s, %s, 'test') "
                              "on conflict do nothing", (code, f"District {code}"))
        self.conn.commit()

    def dbt(self, *args: str, as_of: dt.date, districts: list[str] | None = None,
            full_refresh: bool = False) -> dbt_runner.DbtRunResult:
        result = dbt_runner.run_dbt(list(args), as_of_date=as_of, districts=districts, full_refresh=full_refresh)
        assert result.success, result.failure_message
        return result

    def build_parents(self, as_of: dt.date) -> None:
        self.dbt("run", "--select", "state", "--exclude", "att_day_aggregation", as_of=as_of)

    def build_all(self, as_of: dt.date) -> None:
        """The parents, then the aggregation, in one dbt run (Check Dependencies)."""
        self.dbt("run", "--select", "state", as_of=as_of)

    def aggregate(self, as_of: dt.date, *, districts: list[str] | None = None,
                  full_refresh: bool = False) -> dbt_runner.DbtRunResult:
        return self.dbt("run", "--select", "att_day_aggregation", as_of=as_of, districts=districts,
                        full_refresh=full_refresh)

    def _compare(self, other: str, where: str, params: dict[str, Any] | None = None) -> tuple[int, int]:
        """Rows of the table missing from `other` (a query), and rows of `other` missing from the table."""
        query = (f"with other as ({other}), "
                 f"aggregation as (select * from state.att_day_aggregation) "
                 f"select (select count(*) from (select * from aggregation where {where} "
                 f"          except all select * from other where {where}) as extra), "
                 f"       (select count(*) from (select * from other where {where} "
                 f"          except all select * from aggregation where {where}) as missing)")
        self.conn.execute("set enable_nestloop = off")
        row = self.conn.execute(query, params).fetchone()
        self.conn.execute("reset enable_nestloop")
        self.conn.commit()
        assert row is not None
        return int(row[0]), int(row[1])

    def differences(self, as_of: dt.date, where: str = "true") -> tuple[int, int]:
        """The table against the reference statement for the as-of date."""
        return self._compare(REFERENCE_SQL, where, {"as_of_date": as_of})

    def assert_equal(self, as_of: dt.date, where: str = "true") -> None:
        assert self.differences(as_of, where) == (0, 0)

    def snapshot(self, name: str) -> None:
        self.conn.execute(sql.SQL("drop table if exists public.{}").format(sql.Identifier(name)))
        self.conn.execute(sql.SQL("create table public.{} as select * from state.att_day_aggregation").format(
            sql.Identifier(name)))
        self.conn.commit()

    def differs_from_snapshot(self, name: str, where: str = "true") -> tuple[int, int]:
        return self._compare(f"select * from public.{sql.Identifier(name).as_string(self.conn)}", where)

    def recorded(self, model: str = "att_day_aggregation") -> dict[str, tuple[int | None, dt.date | None]]:
        rows = self.conn.execute("select district_code, landing_batch_id, as_of_date from state.model_build "
                                 "where model_name = %s", (model,)).fetchall()
        self.conn.commit()
        return {code: (batch, as_of) for code, batch, as_of in rows}


AnyWarehouse = TypeVar("AnyWarehouse", bound=Warehouse)


@contextmanager
def new_warehouse(prefix: str, kind: type[AnyWarehouse]) -> Iterator[AnyWarehouse]:
    """A Warehouse (or subclass) over a state database of its own; dropped afterwards."""
    with state_database(prefix) as name, database.connect() as conn:
        yield kind(name, conn)


@pytest.fixture
def warehouse() -> Iterator[Warehouse]:
    with new_warehouse("test_att_day", Warehouse) as warehouse:
        yield warehouse


# --- the scenario: every kind of change, with checks after each run ----------------------------------------

def test_incremental_runs_equal_a_full_recompute_through_a_school_fortnight(warehouse: Warehouse) -> None:
    days = school_days()
    d01, d02 = small_district("D01", seed=1), small_district("D02", seed=2)
    warehouse.register("D01", "D02")
    load(warehouse.conn, d01)
    load(warehouse.conn, d02)
    warehouse.build_all(days[3])  # never built: every district computed whole
    warehouse.assert_equal(days[3])
    assert set(warehouse.recorded()) == {"D01", "D02"}

    def step(as_of: dt.date, *changes: str, district: District = d01) -> None:
        for change in changes:
            apply_change(district, change)
        load(warehouse.conn, district)
        warehouse.build_all(as_of)
        warehouse.assert_equal(as_of)

    # Each change on its own, so no wider recompute hides a missed one. Persons 1, 2, 7 and 8 are enrolled
    # in calendar 10, where period 111 counts on school days 1, 2, 4, 7, 8 and 9.
    # New days reached by the as-of date, with that day's attendance.
    late = counted_row(d01, person_id=1, day=days[4])
    step(days[5])
    # A backdated correction: the absence becomes a tardy.
    late.update(status="T", present_minutes=50, modified_date=late["modified_date"] + dt.timedelta(days=3))
    step(days[5])
    # A deleted row.
    gone = counted_row(d01, person_id=2, day=days[1])
    step(days[5])
    del d01.rows["attendance"][gone["attendance_id"]]
    step(days[5])
    # A row moved to another date and student.
    moved = counted_row(d01, person_id=7, day=days[2])
    step(days[5])
    moved.update(date=days[4], person_id=8)
    step(days[5])
    # A withdrawal.
    d01.rows["enrollment"][10]["end_date"] = days[1]
    step(days[5])
    # An excuse code reclassified: its rows become exempt.
    counted_row(d01, person_id=8, day=days[2], excuse_id=31)
    step(days[5])
    d01.rows["attendance_excuse"][31]["excuse"] = "X"
    step(days[5])
    # A day made non-instructional, a day moved to a Saturday, and a period no longer instructional.
    d01.rows["day"][10 * 100 + 4]["instruction"] = False
    step(days[5])
    d01.rows["day"][10 * 100 + 2]["date"] = saturday(days[2])
    step(days[5])
    d01.rows["period"][112]["non_instructional"] = True
    step(days[6])
    # Calendar thresholds.
    d01.rows["calendar"][10]["half_day_absence_minutes"] = 30
    step(days[6])
    # The as-of date moves back, then forward again past the old one.
    warehouse.aggregate(days[2])
    warehouse.assert_equal(days[2])
    step(days[8], "enrollment_added", "attendance_added", district=d02)
    # A row deleted and revived with other values inside one window (two loads, one build).
    revived = counted_row(d01, person_id=8, day=days[7])
    step(days[8])
    del d01.rows["attendance"][revived["attendance_id"]]
    load(warehouse.conn, d01)
    d01.put("attendance", {**revived, "date": days[8], "period_id": 114})
    step(days[9])
    # A student's enrollment moved to the other calendar (its previous image names the old one).
    d01.rows["enrollment"][70]["calendar_id"] = 20
    step(days[9])

    # Only the aggregation (no Check Dependencies): a landing change its parents have not read yet waits;
    # the result still equals a recompute from the state tables, and the change lands once they are built.
    apply_change(d01, "excuse_reclassified")
    add_attendance(d01, days[9])
    load(warehouse.conn, d01)
    before = warehouse.recorded()["D01"]
    warehouse.aggregate(days[10])
    warehouse.assert_equal(days[10])
    assert warehouse.recorded()["D01"] == (before[0], days[10])
    warehouse.build_all(days[10])
    warehouse.assert_equal(days[10])

    # A load that commits while the parents build: the state tables hold it, but a parent recorded an
    # older horizon. The aggregation must not skip it: once the parent records it, it is processed.
    late_load = counted_row(d01, person_id=7, day=days[9])
    step(days[10])
    late_load.update(date=days[8], person_id=2)
    batch = load(warehouse.conn, d01)
    warehouse.build_parents(days[10])
    previous = warehouse.recorded()["D01"][0]
    warehouse.conn.execute("update state.model_build set landing_batch_id = %s where model_name = 'attendance' "
                           "and district_code = 'D01'", (previous,))
    warehouse.conn.commit()
    warehouse.aggregate(days[10])
    assert warehouse.recorded()["D01"][0] == previous
    warehouse.build_all(days[10])
    assert warehouse.recorded()["D01"][0] == batch
    warehouse.assert_equal(days[10])

    # The districts var: only D02 is processed; D01's pending change waits for its own run.
    apply_change(d01, "attendance_added")
    apply_change(d02, "attendance_corrected")
    load(warehouse.conn, d01)
    load(warehouse.conn, d02)
    warehouse.build_parents(days[11])
    d01_before = warehouse.recorded()["D01"]
    warehouse.aggregate(days[11], districts=["D02"])
    assert warehouse.recorded()["D01"] == d01_before
    warehouse.assert_equal(days[11], "district_code = 'D02'")
    warehouse.aggregate(days[11])
    warehouse.assert_equal(days[11])

    # The Attendance Aggregation Refresh equals the incremental result, for one district and for all.
    warehouse.snapshot("incremental_result")
    warehouse.aggregate(days[11], districts=["D02"], full_refresh=True)
    assert warehouse.differs_from_snapshot("incremental_result") == (0, 0)
    warehouse.aggregate(days[11], full_refresh=True)
    assert warehouse.differs_from_snapshot("incremental_result") == (0, 0)


# --- property: random change sequences -------------------------------------------------------------------

STEP = st.tuples(
    st.lists(st.sampled_from(CHANGES), min_size=0, max_size=3),   # changes in the step's load
    st.sampled_from(["D01", "D02"]),                                  # the district that loads
    st.integers(min_value=-3, max_value=3),                           # as-of date move, in school days
    st.booleans(),                                                    # rebuild the parents first?
)


# Each example runs several dbt subprocesses (~30 s): 6 keep CI well inside its time; raise the number for a
# deeper search (ATTENDANCE_HYPOTHESIS_EXAMPLES=50 pytest -k random_change_sequences).
EXAMPLES = int(os.environ.get("ATTENDANCE_HYPOTHESIS_EXAMPLES", "6"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=10_000), steps=st.lists(STEP, min_size=2, max_size=3))
def test_random_change_sequences_keep_incremental_equal_to_full(
        warehouse_for_examples: Warehouse, seed: int,
        steps: list[tuple[list[str], str, int, bool]]) -> None:
    warehouse = warehouse_for_examples
    warehouse.reset()
    days = school_days()
    districts = {"D01": small_district("D01", seed, students=5), "D02": small_district("D02", seed + 1, students=5)}
    warehouse.register(*districts)
    for district in districts.values():
        load(warehouse.conn, district)
    position = 4
    warehouse.build_all(days[position])
    warehouse.assert_equal(days[position])
    for changes, code, move, rebuild_parents in steps:
        for change in changes:
            apply_change(districts[code], change)
        load(warehouse.conn, districts[code])
        position = min(max(position + move, 0), len(days) - 1)
        (warehouse.build_all if rebuild_parents else warehouse.aggregate)(days[position])
        warehouse.assert_equal(days[position])
    warehouse.snapshot("incremental_result")
    warehouse.aggregate(days[position], full_refresh=True)
    assert warehouse.differs_from_snapshot("incremental_result") == (0, 0)


class ResettableWarehouse(Warehouse):
    def reset(self) -> None:
        """Back to an empty warehouse between examples (faster than a new database)."""
        tables = [f"landing.{spec.name}" for spec in TABLES]
        self.conn.execute(f"truncate {', '.join(tables)}, landing.superseded_row, landing.load_log, "
                          "landing.load_batch, landing.district restart identity cascade")
        self.conn.execute("drop table if exists state.att_day_aggregation cascade")
        self.conn.execute("drop table if exists state.model_build")
        self.conn.commit()


@pytest.fixture(scope="module")
def warehouse_for_examples() -> Iterator[ResettableWarehouse]:
    with new_warehouse("test_att_day_prop", ResettableWarehouse) as warehouse:
        warehouse.register("D01", "D02")
        yield warehouse
