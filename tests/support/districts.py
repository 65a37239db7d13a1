"""District data for the tests: the small hand-written sample database, its CSV extract, and generated
districts whose changes a test loads into landing itself.

`create_district_database` writes the sample (every contract table, a few rows each) into a database of
its own, for loader and model tests. `small_district` generates a district's source rows from a seed and
`apply_change` changes them the way districts do; `load` sends them to landing as one batch the way the
loader records it (LandingLoad), so a test controls exactly which batch carries which change.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from orchestration.districts.contract import TABLES, create_table_sql, table
from orchestration.districts.registry import District
from orchestration.warehouse import database
from orchestration.warehouse.setup import ensure_partition
from tests.support.warehouse import district_conn

SAMPLE_ROWS = """
insert into school values (1, '101', 'North Elementary', 'S101'), (2, '201', 'Central High', 'S201');
insert into school_year values (2027, '2026-27', true);
insert into calendar values
    (10, 1, 2027, 'North 26-27', '2026-08-24', '2027-05-28', null, null, false, '2026-08-01 08:00'),
    (20, 2, 2027, 'Central 26-27', '2026-08-24', '2027-05-28', 240, 120, false, '2026-08-01 08:00');
insert into period_schedule values (11, 10, 'AM/PM'), (21, 20, 'Regular'), (22, 20, 'Early release');
insert into period values
    (111, 11, 'AM', 1, '08:00', '11:30', 210, false), (112, 11, 'PM', 2, '12:30', '15:00', 150, false),
    (211, 21, 'P1', 1, '08:00', '09:00', 60, false), (212, 21, 'P2', 2, '09:05', '10:05', 60, false),
    (213, 21, 'Lunch', 3, '10:05', '10:35', 30, true), (214, 21, 'P3', 4, '10:40', '11:40', 60, false),
    (221, 22, 'P1', 1, '08:00', '08:40', 40, false), (222, 22, 'P2', 2, '08:45', '09:25', 40, false);
insert into day values
    (1001, 10, '2026-09-01', 11, true, true, null, '2026-08-01 08:00'),
    (1002, 10, '2026-09-02', 11, true, true, null, '2026-08-01 08:00'),
    (1003, 10, '2026-09-03', null, false, false, 'Holiday', '2026-08-01 08:00'),
    (2001, 20, '2026-09-01', 21, true, true, null, '2026-08-01 08:00'),
    (2002, 20, '2026-09-02', 22, true, true, 'Early release', '2026-08-01 08:00');
insert into person values
    (1, 'ST0001', '1001', 'Rivera', 'Ana', '2017-03-02', 'F', '2026-08-01 08:00'),
    (2, 'ST0002', '1002', 'Chen', 'Bo', '2010-11-20', 'M', '2026-08-01 08:00'),
    (3, null, '1003', 'Okafor', 'Chi', '2010-05-05', 'F', '2026-08-01 08:00');
insert into enrollment values
    (1, 1, 10, '03', '2026-08-24', null, 'P', false, '2026-08-01 08:00'),
    (2, 2, 20, '10', '2026-08-24', null, 'P', false, '2026-08-01 08:00'),
    (3, 3, 20, '10', '2026-08-24', '2026-09-01', 'P', false, '2026-08-01 08:00');
insert into attendance_excuse values
    (31, 10, 'ILL', 'Illness', 'A', 'E', '01', true, '2026-08-01 08:00'),
    (32, 20, 'TRU', 'Truant', 'A', 'U', '02', true, '2026-08-01 08:00'),
    (33, 20, 'FLD', 'Field trip', 'A', 'X', '03', true, '2026-08-01 08:00');
insert into attendance values
    (501, 1, 10, 111, '2026-09-01', 'A', 'E', 31, null, null, '2026-09-01 09:00'),
    (502, 2, 20, 211, '2026-09-01', 'T', 'U', null, 45, 'late bus', '2026-09-01 09:00'),
    (503, 2, 20, 212, '2026-09-02', 'A', '', null, null, null, '2026-09-02 09:00'),
    (504, 3, 20, 214, '2026-09-01', 'A', 'U', 33, null, null, '2026-09-01 12:00');
insert into behavior_type values (41, 20, 'FGT', 'Fighting', 'Violence', 'V01', true);
insert into behavior_response_type values (51, 20, 'DET', 'Detention', 'R01', true);
insert into behavior_resolution_type values (61, 20, 'RES', 'Resolved', 'Z01', true);
"""


def create_district_database(name: str, *, rows: bool = True, skip_tables: tuple[str, ...] = ()) -> None:
    database.drop_database(name)
    database.ensure_database(name)
    with database.connect(name, autocommit=True) as conn:
        for spec in TABLES:
            if spec.name not in skip_tables:
                conn.execute(create_table_sql(spec, "public"))
        if rows:
            conn.execute(SAMPLE_ROWS)


def query(district: District, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of a statement run in a district's own database."""
    assert district.source.database
    with database.connect(district.source.database) as conn:
        return conn.execute(statement, params).fetchall()


def scalar(district: District, statement: str, params: Any = None) -> Any:
    return query(district, statement, params)[0][0]


def export_csv(district: District, folder: Path) -> None:
    """The district's database as a CSV extract in `folder` (one file per contract table, header first)."""
    folder.mkdir()
    with district_conn(district) as source:
        for spec in TABLES:
            with open(folder / f"{spec.name}.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(spec.column_names)
                columns = ", ".join(spec.column_names)
                for row in source.execute(f"select {columns} from {spec.name} order by 1").fetchall():
                    writer.writerow(["" if v is None else str(v).lower() if isinstance(v, bool) else v for v in row])


# --- generated districts, and the changes a district makes ----------------------------------------------

FIRST_DAY = dt.date(2026, 9, 1)
SCHOOL_DAYS = 14
Row = dict[str, Any]


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
class DistrictRows:
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


def small_district(code: str, seed: int, students: int = 8) -> DistrictRows:
    """Two calendars (one with its own thresholds), three period schedules with a lunch period, a
    non-instruction day, a no-attendance day and a day without schedule; overlapping, withdrawn, N and
    no-show enrollments; excuse codes of every kind; random attendance with duplicates."""
    district = DistrictRows(code, random.Random(seed))
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


def add_attendance(district: DistrictRows, day: dt.date | None = None) -> None:
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


def counted_row(district: DistrictRows, person_id: int, day: dt.date, **values: Any) -> Row:
    """An absence of a calendar-10 student on period 111 (instructional on schedule 11), added to the district."""
    row = {"attendance_id": district.new_id(), "person_id": person_id, "calendar_id": 10, "period_id": 111,
           "date": day, "status": "A", "excuse": "U", "excuse_id": None, "present_minutes": None, "comments": None,
           "modified_date": dt.datetime.combine(day, dt.time(9)), **values}
    district.put("attendance", row)
    return row


CHANGES = ("attendance_added", "attendance_corrected", "attendance_moved", "attendance_deleted",
           "attendance_revived", "enrollment_changed", "enrollment_added", "excuse_reclassified", "day_changed",
           "period_changed", "calendar_changed")


def apply_change(district: DistrictRows, change: str) -> None:
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


def load(conn: psycopg.Connection, district: DistrictRows) -> int:
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
