"""Backdated changes made visible (issue 11 point 4): every build of att_day_aggregation records, per district,
the changed attendance rows dated before the district's previous as-of date and the student-days they
changed, in state.backdated_change (append-only), and logs one line per district.

D01's student 7 has only the attendance rows written here, so each backdated change alters exactly one
student-day: an absence inserted a week before the previous as-of date, one deleted, one changed; an
absence on the new as-of date (a same-day change) is not backdated. D02 does not change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from orchestration.dbt.backdated import backdated_changes
from tests.support.districts import DistrictRows, counted_row, load, school_days, small_district
from tests.support.warehouse import Warehouse, new_warehouse

CODES = ("D01", "D02")
DAYS = school_days()
PREVIOUS_AS_OF = DAYS[9]
AS_OF = DAYS[10]
STUDENT = 7  # calendar 10: schedule 11 (period 111) on DAYS[1], [2], [4]; schedule 12 (period 121) on DAYS[10]


@pytest.fixture(scope="module")
def district() -> DistrictRows:
    rows = small_district("D01", seed=300, students=12)
    for key in [key for key, row in rows.rows["attendance"].items() if row["person_id"] == STUDENT]:
        del rows.rows["attendance"][key]
    return rows


@pytest.fixture(scope="module")
def warehouse(district: DistrictRows) -> Iterator[Warehouse]:
    """Both districts loaded and built as of PREVIOUS_AS_OF; student 7 absent on DAYS[1] and DAYS[2]."""
    with new_warehouse("test_backdated") as warehouse:
        warehouse.register(*CODES)
        counted_row(district, STUDENT, DAYS[1])
        counted_row(district, STUDENT, DAYS[2])
        load(warehouse.conn, district)
        load(warehouse.conn, small_district("D02", seed=301, students=12))
        warehouse.build_all(PREVIOUS_AS_OF)
        yield warehouse


def recorded(warehouse: Warehouse) -> list[dict[str, Any]]:
    cursor = warehouse.conn.execute("select * from state.backdated_change order by built_at, district_code")
    names = [column.name for column in cursor.description or []]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    warehouse.conn.commit()
    return rows


def student_rows(district: DistrictRows, day: dt.date) -> list[int]:
    return [key for key, row in district.rows["attendance"].items()
            if row["person_id"] == STUDENT and row["date"] == day]


def test_first_build_is_recorded_as_not_measured(warehouse: Warehouse) -> None:
    first = recorded(warehouse)
    assert [(row["district_code"], row["build_mode"], row["backdated_rows"]) for row in first] == [
        ("D01", "rebuilt", None), ("D02", "rebuilt", None)]


def test_nightly_counts_backdated_rows_and_student_days(warehouse: Warehouse, district: DistrictRows) -> None:
    before = len(recorded(warehouse))
    counted_row(district, STUDENT, DAYS[4])  # inserted, a week before the previous as-of date
    (deleted,) = student_rows(district, DAYS[1])
    del district.rows["attendance"][deleted]
    (changed,) = student_rows(district, DAYS[2])
    district.rows["attendance"][changed]["excuse"] = "E"  # unexcused -> excused
    counted_row(district, STUDENT, AS_OF, period_id=121)  # the new day: not backdated
    load(warehouse.conn, district)
    warehouse.build_parents(AS_OF)
    result = warehouse.aggregate(AS_OF)

    rows = {row["district_code"]: row for row in recorded(warehouse)[before:]}
    assert set(rows) == set(CODES)
    d01 = rows["D01"]
    assert (d01["build_mode"], d01["previous_as_of_date"], d01["as_of_date"]) == ("updated", PREVIOUS_AS_OF, AS_OF)
    assert (d01["backdated_inserted"], d01["backdated_changed"], d01["backdated_deleted"]) == (1, 1, 1)
    assert (d01["backdated_rows"], d01["student_days_changed"]) == (3, 3)
    d02 = rows["D02"]
    assert (d02["build_mode"], d02["backdated_rows"], d02["student_days_changed"]) == ("updated", 0, 0)
    assert d01["invocation_id"] == d02["invocation_id"] == result.run_results["metadata"]["invocation_id"]
    assert "backdated changes D01: 3 attendance row(s) dated before 2026-09-14 (1 inserted, 1 changed, 1 deleted), " \
           "3 student-day(s) changed" in result.stdout
    assert "backdated changes D02: 0 attendance row(s)" in result.stdout
    # The Python side reads the same rows back, by dbt invocation.
    assert {change.district_code: change.describe() for change in backdated_changes(
        warehouse.conn, invocation_id=d01["invocation_id"])}["D01"].startswith("D01: 3 backdated attendance row(s)")
    warehouse.conn.commit()


def test_full_refresh_is_measured_against_the_replaced_rows(warehouse: Warehouse, district: DistrictRows) -> None:
    before = len(recorded(warehouse))
    (changed,) = student_rows(district, DAYS[4])
    district.rows["attendance"][changed]["excuse"] = "E"
    load(warehouse.conn, district)
    warehouse.build_parents(AS_OF)
    warehouse.aggregate(AS_OF, districts=["D01"], full_refresh=True)
    (row,) = recorded(warehouse)[before:]
    assert (row["district_code"], row["build_mode"], row["previous_as_of_date"]) == ("D01", "rebuilt", AS_OF)
    assert (row["backdated_changed"], row["backdated_rows"], row["student_days_changed"]) == (1, 1, 1)


def test_a_rerun_without_changes_records_zero(warehouse: Warehouse) -> None:
    before = len(recorded(warehouse))
    warehouse.aggregate(AS_OF, districts=["D01"])
    (row,) = recorded(warehouse)[before:]
    assert (row["build_mode"], row["backdated_rows"], row["student_days_changed"]) == ("unchanged", 0, 0)
