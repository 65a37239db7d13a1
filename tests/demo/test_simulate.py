"""The day simulator, against real PostgreSQL: clock, each day's activity, modified dates, determinism."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestration.demo.checks import integrity_problems, table_checksums
from orchestration.demo.data import DemoDataError, DemoSize, demo_registry, generate_demo, read_clock
from orchestration.demo.simulate import SimulationResult, run_simulation, simulate_days
from orchestration.districts.registry import District, DistrictSource
from orchestration.warehouse import database
from tests.support.districts import query, scalar

TODAY = dt.date(2026, 12, 4)  # a Friday
SIZE = DemoSize(districts=2, schools_per_district=3, students_per_district=300, today=TODAY, seed=11)
DAYS = 3


def fresh_districts(tag: str) -> list[District]:
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    return [dataclasses.replace(district, source=DistrictSource(
        kind="database", database=f"demo_sim_{tag}_{suffix}_{district.code.lower()}"))
        for district in demo_registry(SIZE.districts)]


def drop(districts: list[District]) -> None:
    for district in districts:
        assert district.source.database
        database.drop_database(district.source.database)


@dataclasses.dataclass
class Simulated:
    districts: list[District]
    result: SimulationResult
    ids_before: dict[str, set[int]]  # district code -> attendance ids before the simulation


@pytest.fixture(scope="module")
def simulated() -> Iterator[Simulated]:
    districts = fresh_districts("main")
    generate_demo(districts, SIZE)
    ids_before = {d.code: {row[0] for row in query(d, "select attendance_id from attendance")} for d in districts}
    result = run_simulation(districts, DAYS)
    yield Simulated(districts, result, ids_before)
    drop(districts)


def school_days(district: District, first: dt.date, before: dt.date) -> set[dt.date]:
    return {row[0] for row in query(district, "select distinct date from day where attendance and instruction "
                                              "and period_schedule_id is not null and date >= %s and date < %s",
                                    (first, before))}


def test_clock_advances_by_school_days(simulated: Simulated) -> None:
    result = simulated.result
    assert result.start_today == TODAY
    assert len(result.days) == DAYS
    assert [day.date for day in result.days] == sorted(day.date for day in result.days)
    assert all(day.date.weekday() < 5 for day in result.days)
    assert result.days[0].date == TODAY  # a school day itself: the first simulated day is today
    assert result.today > result.days[-1].date
    clock = read_clock(simulated.districts)
    assert (clock.today, clock.simulated_days, clock.seed) == (result.today, DAYS, SIZE.seed)
    # Every school day between the old and the new today was simulated, no other.
    calendar_days: set[dt.date] = set()
    for district in simulated.districts:
        calendar_days |= school_days(district, TODAY, result.today)
    assert calendar_days <= {day.date for day in result.days}
    assert f"to {result.today.isoformat()}." in result.describe()


def test_each_day_gets_its_attendance_stamped_that_day(simulated: Simulated) -> None:
    for day in simulated.result.days:
        total = 0
        for district in simulated.districts:
            same_day, before = query(district, "select count(*) filter (where modified_date::date = date), "
                                               "count(*) filter (where modified_date::date < date) "
                                               "from attendance where date = %s", (day.date,))[0]
            total += same_day
            assert before == 0
        assert total > 0
    for district in simulated.districts:
        last_date, last_change = query(district, "select max(date), max(modified_date) from attendance")[0]
        assert last_date < simulated.result.today
        assert last_change < dt.datetime.combine(simulated.result.today, dt.time())


def test_backdated_corrections_and_entries(simulated: Simulated) -> None:
    for day in simulated.result.days:
        corrected = backdated = 0
        for district in simulated.districts:
            rows = query(district, "select min(date), count(*) from attendance where modified_date::date = %s "
                                   "and date < %s", (day.date, day.date))[0]
            corrected += rows[1]
            if rows[0] is not None:
                assert (day.date - rows[0]).days <= 21
            backdated += scalar(district, "select count(*) from attendance where modified_date::date = %s "
                                          "and comments = 'Entered late by teacher'", (day.date,))
        assert corrected > 0 and backdated > 0


def test_rows_are_deleted(simulated: Simulated) -> None:
    for district in simulated.districts:
        after = {row[0] for row in query(district, "select attendance_id from attendance")}
        assert simulated.ids_before[district.code] - after
    assert all(sum(activity["deleted_rows"] for activity in day.activity.values()) > 0
               for day in simulated.result.days)


def test_enrollments_withdrawals_codes_and_closures(simulated: Simulated) -> None:
    days = [day.date for day in simulated.result.days]
    totals = {"new": 0, "withdrawn": 0, "reclassified": 0, "closed": 0}
    for district in simulated.districts:
        totals["new"] += scalar(district, "select count(*) from enrollment e join person p using (person_id) "
                                          "where e.start_date = any(%s) and p.modified_date::date = e.start_date",
                                (days,))
        totals["withdrawn"] += scalar(district, "select count(*) from enrollment where modified_date::date = any(%s) "
                                                "and end_date is not null and end_date < modified_date::date", (days,))
        totals["reclassified"] += scalar(district, "select count(*) from attendance_excuse "
                                                   "where modified_date::date = any(%s)", (days,))
        totals["closed"] += scalar(district, "select count(*) from day where modified_date::date = any(%s) "
                                             "and not instruction and not attendance and period_schedule_id is null",
                                   (days,))
    assert totals["new"] >= DAYS * len(simulated.districts)
    assert totals["withdrawn"] >= DAYS * len(simulated.districts)
    assert totals["reclassified"] >= DAYS
    assert totals["closed"] >= DAYS


def test_contract_still_holds(simulated: Simulated) -> None:
    for district in simulated.districts:
        assert district.source.database
        assert integrity_problems(district.source.database) == []


def test_same_seed_same_days(simulated: Simulated) -> None:
    again = fresh_districts("again")
    try:
        generate_demo(again, SIZE)
        assert simulate_days(again, DAYS) == simulated.result.today
        for first, second in zip(simulated.districts, again, strict=True):
            assert first.source.database and second.source.database
            assert table_checksums(first.source.database) == table_checksums(second.source.database)
    finally:
        drop(again)


def test_another_seed_other_activity_and_zero_days() -> None:
    districts = fresh_districts("seed")
    try:
        generate_demo(districts, SIZE)
        assert simulate_days(districts, 0) == TODAY
        first = run_simulation(districts, 1, seed=99)
        assert first.start_today == TODAY and read_clock(districts).simulated_days == 1
        with pytest.raises(DemoDataError):
            simulate_days(districts, -1)
    finally:
        drop(districts)


def test_concurrent_simulations_take_turns() -> None:
    districts = fresh_districts("turns")
    try:
        generate_demo(districts, SIZE)
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda _: simulate_days(districts, 1), range(2)))
        clock = read_clock(districts)
        assert clock.simulated_days == 2
        assert results[0] != results[1] and clock.today == max(results)
    finally:
        drop(districts)


def test_simulating_requires_demo_data() -> None:
    districts = fresh_districts("missing")
    database.ensure_server()
    assert districts[0].source.database
    database.ensure_database(districts[0].source.database)
    try:
        with pytest.raises(DemoDataError, match="demo-data"):
            simulate_days(districts[:1], 1)
    finally:
        drop(districts[:1])
