"""The demo district generator, against real PostgreSQL: contract, determinism and realism."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterator

import pytest

from orchestration.demo.calendar import school_year_end
from orchestration.demo.checks import integrity_problems, table_checksums
from orchestration.demo.data import BIE_SIZE, DemoSize, DemoSummary, demo_registry, generate_demo, read_clock
from orchestration.districts.contract import TABLES
from orchestration.districts.registry import District, DistrictSource
from orchestration.warehouse import database
from tests.support.districts import query, scalar

TODAY = dt.date(2026, 11, 28)  # a Saturday, the Thanksgiving weekend
SIZE = DemoSize(districts=2, schools_per_district=4, students_per_district=500, today=TODAY, seed=7)

def fresh_districts(tag: str, count: int) -> list[District]:
    """Registry entries with database names no other test or engineer uses."""
    return [dataclasses.replace(district, source=DistrictSource(
        kind="database", database=f"demo_test_{tag}_{os.getpid()}_{district.code.lower()}"))
        for district in demo_registry(count)]



def drop(districts: list[District]) -> None:
    for district in districts:
        assert district.source.database
        database.drop_database(district.source.database)


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[list[District], DemoSummary]]:
    districts = fresh_districts("gen", SIZE.districts)
    summary = generate_demo(districts, SIZE)
    yield districts, summary
    drop(districts)


def test_registry_names_match_the_checked_in_registry() -> None:
    districts = demo_registry(21)
    assert [d.code for d in districts[:3]] == ["D01", "D02", "D03"]
    assert districts[0].name == "Riverbend Unified"
    assert districts[3].source == DistrictSource(kind="database", database="demo_d04")
    assert len({d.name for d in districts}) == 21


def test_bie_size_covers_a_whole_school_year() -> None:
    assert BIE_SIZE.districts * BIE_SIZE.schools_per_district == 180
    assert 44_000 <= BIE_SIZE.districts * BIE_SIZE.students_per_district <= 48_000
    assert BIE_SIZE.end_year == school_year_end(dt.date.today()) - 1
    assert BIE_SIZE.today is not None and BIE_SIZE.today > dt.date(BIE_SIZE.resolved_end_year(), 6, 20)


def test_every_contract_table_and_column(demo: tuple[list[District], DemoSummary]) -> None:
    districts, summary = demo
    for district in districts:
        columns = query(district, "select table_name, column_name from information_schema.columns "
                                  "where table_schema = 'public'")
        present = {(table, column) for table, column in columns}
        for spec in TABLES:
            assert {(spec.name, c) for c in spec.column_names} <= present
            assert summary.row_counts[district.code][spec.name] > 0, spec.name
    assert summary.today == TODAY and summary.end_year == 2027
    assert "2026-11-28" in summary.describe()


def test_integrity_foreign_keys_and_codes(demo: tuple[list[District], DemoSummary]) -> None:
    for district in demo[0]:
        assert district.source.database
        assert integrity_problems(district.source.database) == []
        # Codes come from the row's own calendar.
        assert scalar(district, "select count(*) from attendance a join attendance_excuse x using (excuse_id) "
                                "where x.calendar_id <> a.calendar_id") == 0


def test_same_seed_same_data_and_another_seed_differs(
        demo: tuple[list[District], DemoSummary]) -> None:
    districts, _ = demo
    again = fresh_districts("again", SIZE.districts)
    other = fresh_districts("other", SIZE.districts)
    try:
        generate_demo(again, SIZE)
        generate_demo(other, dataclasses.replace(SIZE, seed=8))
        for first, second, third in zip(districts, again, other, strict=True):
            assert first.source.database and second.source.database and third.source.database
            reference = table_checksums(first.source.database)
            assert table_checksums(second.source.database) == reference
            assert table_checksums(third.source.database)["attendance"] != reference["attendance"]
    finally:
        drop(again + other)


def test_clock_is_stored_with_the_data(demo: tuple[list[District], DemoSummary]) -> None:
    clock = read_clock(demo[0])
    assert (clock.today, clock.seed, clock.end_year, clock.simulated_days) == (TODAY, 7, 2027, 0)


def test_about_180_instructional_weekdays_per_calendar(demo: tuple[list[District], DemoSummary]) -> None:
    for district in demo[0]:
        counts = query(district, """
            select c.calendar_id, count(*) filter (where d.instruction and d.attendance),
                   count(*) filter (where d.instruction and extract(isodow from d.date) > 5),
                   count(*) filter (where d.date not between c.start_date and c.end_date),
                   count(*) filter (where d.comments = 'Early release')
            from calendar c join day d using (calendar_id) group by c.calendar_id""")
        for _, instructional, weekend, outside, early in counts:
            assert 170 <= instructional <= 182
            assert weekend == 0 and outside == 0
            assert 3 <= early <= 10
        # Calendars run to the end of the school year, well past today.
        assert scalar(district, "select min(end_date) from calendar") > dt.date(2027, 5, 1)
        assert scalar(district, "select count(*) from day where period_schedule_id is null") > 0


def test_early_release_days_run_a_shorter_schedule(demo: tuple[list[District], DemoSummary]) -> None:
    for district in demo[0]:
        rows = query(district, """
            select ps.name, sum(p.period_minutes) filter (where not p.non_instructional)
            from day d join period_schedule ps using (period_schedule_id) join period p using (period_schedule_id)
            where d.comments = 'Early release' or d.comments is null and d.instruction
            group by d.day_id, ps.name""")
        regular = [minutes for name, minutes in rows if name == "Regular"]
        early = [minutes for name, minutes in rows if name == "Early Release"]
        assert early and regular and max(early) < min(regular)


def test_elementary_two_periods_secondary_six_to_eight_plus_lunch(
        demo: tuple[list[District], DemoSummary]) -> None:
    for district in demo[0]:
        rows = query(district, """
            select s.name, count(*) filter (where not p.non_instructional), count(*) filter (where p.non_instructional)
            from school s join calendar c using (school_id) join period_schedule ps using (calendar_id)
            join period p using (period_schedule_id)
            where ps.name = 'Regular' and not c.exclude
            group by c.calendar_id, s.name""")
        for school, instructional, lunch in rows:
            if school.endswith("Elementary"):
                assert (instructional, lunch) == (2, 0)
            else:
                assert 6 <= instructional <= 8 and lunch == 1


def test_attendance_only_before_today(demo: tuple[list[District], DemoSummary]) -> None:
    for district in demo[0]:
        last_date, last_change = query(district, "select max(date), max(modified_date) from attendance")[0]
        assert last_date < TODAY and last_change < dt.datetime.combine(TODAY, dt.time())
        for table in ("person", "enrollment", "day", "calendar", "attendance_excuse"):
            assert scalar(district, f"select max(modified_date) from {table}") < dt.datetime.combine(TODAY, dt.time())
        # Attendance reaches the last school day before today.
        assert scalar(district, "select max(date) from day where instruction and attendance and date < %s",
                      (TODAY,)) == last_date


# docs/domain.md's aggregation, roughly (latest row per period, effective codes, default or calendar thresholds).
CHRONIC = """
with student_days as (
    select distinct e.person_id, e.calendar_id, d.date, d.period_schedule_id
    from enrollment e join day d on d.calendar_id = e.calendar_id
        and d.date between e.start_date and coalesce(e.end_date, d.date)
    where d.instruction and d.attendance and not e.no_show and e.service_type in ('P', 'S') and d.date < %(today)s
),
scheduled as (
    select period_schedule_id, sum(period_minutes) as minutes from period where not non_instructional group by 1
),
latest as (
    select distinct on (a.person_id, a.date, a.period_id) a.person_id, a.date, a.period_id, a.present_minutes,
           coalesce(x.status, a.status) as status, coalesce(x.excuse, a.excuse, '') as excuse
    from attendance a left join attendance_excuse x using (excuse_id)
    order by a.person_id, a.date, a.period_id, a.modified_date desc, a.attendance_id desc
),
daily as (
    select sd.person_id, sd.calendar_id, s.minutes,
        coalesce(c.whole_day_absence_minutes, ceil(0.5 * s.minutes)) as whole,
        coalesce(c.half_day_absence_minutes, ceil(0.25 * s.minutes)) as half,
        least(s.minutes, coalesce(sum(case when l.excuse = 'X' then 0
            when l.status = 'A' then p.period_minutes - coalesce(l.present_minutes, 0)
            else p.period_minutes - coalesce(l.present_minutes, p.period_minutes) end), 0)) as absent
    from student_days sd
    join scheduled s using (period_schedule_id)
    join calendar c using (calendar_id)
    left join period p on p.period_schedule_id = sd.period_schedule_id and not p.non_instructional
    left join latest l on l.person_id = sd.person_id and l.date = sd.date and l.period_id = p.period_id
    group by sd.person_id, sd.calendar_id, sd.date, s.minutes, c.whole_day_absence_minutes,
             c.half_day_absence_minutes
),
students as (
    select person_id, count(*) as enrolled,
        sum(case when absent > 0 and absent >= whole then 1 when absent > 0 and absent >= half then 0.5 else 0 end)
            as absent_days
    from daily group by person_id, calendar_id
)
select count(*) filter (where enrolled >= 10), count(*) filter (where enrolled >= 10 and absent_days >= 0.1 * enrolled),
       count(*) filter (where absent_days = 0)
from students
"""


def test_about_one_in_six_students_chronically_absent(demo: tuple[list[District], DemoSummary]) -> None:
    eligible = chronic = never_absent = 0
    for district in demo[0]:
        counted, absent, perfect = query(district, CHRONIC, {"today": TODAY})[0]
        eligible, chronic, never_absent = eligible + counted, chronic + absent, never_absent + perfect
    assert 0.11 <= chronic / eligible <= 0.23
    assert never_absent > 0  # the skew: many students are never absent at all


def test_excuse_mix_and_minutes(demo: tuple[list[District], DemoSummary]) -> None:
    for district in demo[0]:
        mix = dict(query(district, "select coalesce(excuse, 'null'), count(*) from attendance group by 1"))
        assert set(mix) == {"E", "U", "X", ""}
        assert mix["E"] > mix["X"] and mix["U"] > mix[""]
        statuses = dict(query(district, "select status, count(*) from attendance group by 1"))
        assert set(statuses) == {"A", "T", "E"}
        partial = query(district, "select count(present_minutes), count(*) - count(present_minutes) "
                                  "from attendance where status in ('T', 'E')")[0]
        assert partial[0] > 0 and partial[1] > 0  # present minutes usually given, sometimes empty
        # Present minutes stay within the period (rows on another schedule's period aside: those are ignored).
        assert scalar(district, """select count(*) from attendance a join period p using (period_id)
                                   join day d on d.calendar_id = a.calendar_id and d.date = a.date
                                   where p.period_schedule_id = d.period_schedule_id
                                     and a.present_minutes not between 0 and p.period_minutes""") == 0


def test_per_calendar_codes_and_behavior_tables(demo: tuple[list[District], DemoSummary]) -> None:
    first, second = demo[0]
    codes = [set(r[0] for r in query(d, "select code from attendance_excuse")) for d in (first, second)]
    assert codes[0] != codes[1]  # districts name their codes differently
    for district in demo[0]:
        assert scalar(district, "select count(distinct calendar_id) from attendance_excuse") == \
            scalar(district, "select count(*) from calendar")
        assert scalar(district, "select count(*) from attendance_excuse where not active") > 0
        for table in ("behavior_type", "behavior_response_type", "behavior_resolution_type"):
            assert scalar(district, f"select count(distinct calendar_id) from {table}") == \
                scalar(district, "select count(*) from calendar")


def test_rare_but_realistic_irregularities(demo: tuple[list[District], DemoSummary]) -> None:
    checks = {
        "excluded calendar": "select count(*) from calendar where exclude",
        "calendar thresholds set": "select count(*) from calendar where whole_day_absence_minutes is not null",
        "calendar thresholds empty": "select count(*) from calendar where whole_day_absence_minutes is null",
        "no-show": "select count(*) from enrollment where no_show",
        "special-ed services only": "select count(*) from enrollment where service_type = 'N'",
        "secondary enrollment": "select count(*) from enrollment where service_type = 'S'",
        "overlapping enrollments": """select count(*) from enrollment a join enrollment b
            on a.person_id = b.person_id and a.calendar_id = b.calendar_id and a.enrollment_id < b.enrollment_id
            and a.start_date <= coalesce(b.end_date, a.start_date)
            and b.start_date <= coalesce(a.end_date, b.start_date)""",
        "mid-year entry": "select count(*) from enrollment e join calendar c using (calendar_id) "
                          "where e.start_date > c.start_date + 20 and e.service_type = 'P'",
        "withdrawal": "select count(*) from enrollment where end_date is not null and not no_show",
        "empty state id": "select count(*) from person where coalesce(state_id, '') = ''",
        "code disagrees with row": "select count(*) from attendance a join attendance_excuse x using (excuse_id) "
                                   "where x.excuse <> a.excuse",
        "code status disagrees with row": "select count(*) from attendance a join attendance_excuse x "
                                          "using (excuse_id) where x.status <> a.status",
        "absence with some present minutes": "select count(*) from attendance where status = 'A' "
                                             "and present_minutes > 0",
        "row on another schedule's period": """select count(*) from attendance a
            join day d on d.calendar_id = a.calendar_id and d.date = a.date
            join period p on p.period_id = a.period_id where p.period_schedule_id <> d.period_schedule_id""",
        "row on lunch": "select count(*) from attendance a join period p using (period_id) where p.non_instructional",
        "duplicate rows for one period": """select count(*) from (select person_id, date, period_id from attendance
            group by 1, 2, 3 having count(distinct modified_date) > 1) as d""",
        "row typed in days later": "select count(*) from attendance where modified_date::date > date",
        "instructional day without attendance": "select count(*) from day where instruction and not attendance",
    }
    for label, statement in checks.items():
        total = sum(scalar(district, statement) for district in demo[0])
        assert total > 0, label


def test_movers_keep_their_state_id(demo: tuple[list[District], DemoSummary]) -> None:
    first, second = demo[0]
    statement = """select p.state_id, min(e.start_date), max(coalesce(e.end_date, date '9999-12-31'))
                   from person p join enrollment e using (person_id)
                   where coalesce(p.state_id, '') <> '' and e.service_type = 'P' group by p.state_id"""
    spans = [{state_id: (start, end) for state_id, start, end in query(d, statement)} for d in (first, second)]
    shared = spans[0].keys() & spans[1].keys()
    assert len(shared) >= 2
    for state_id in shared:
        (start_a, end_a), (start_b, end_b) = spans[0][state_id], spans[1][state_id]
        # Withdrawn from one district before entering the other.
        assert end_a < start_b or end_b < start_a
    # Within a district, a state id belongs to one person.
    for district in demo[0]:
        assert scalar(district, "select count(*) - count(distinct state_id) from person "
                                "where coalesce(state_id, '') <> ''") == 0


def test_a_year_not_yet_started_has_no_attendance() -> None:
    districts = fresh_districts("summer", 1)
    try:
        summary = generate_demo(districts, DemoSize(districts=1, schools_per_district=1, students_per_district=50,
                                                    today=dt.date(2026, 7, 20), seed=3))
        assert summary.end_year == 2027
        assert summary.row_counts["D01"]["attendance"] == 0
        assert summary.row_counts["D01"]["person"] == 50
        assert districts[0].source.database
        assert integrity_problems(districts[0].source.database) == []
    finally:
        drop(districts)


def test_nevada_size_is_skewed_like_the_state() -> None:
    from orchestration.demo.data import nevada_size

    size = nevada_size()
    students = [size.students_of(i) for i in range(1, size.districts + 1)]
    assert size.districts == 17 and 450_000 <= sum(students) <= 470_000
    assert sum(size.schools_of(i) for i in range(1, 18)) == 650
    assert 0.64 <= students[0] / sum(students) <= 0.69  # Clark County
    small = size.scaled(0.05)
    assert small.students_of(1) == 15_350 and small.schools_of(1) == 21 and small.students_of(17) == 50


def test_a_skewed_size_gives_each_district_its_own_students_and_schools() -> None:
    """Per-district students and schools; movers into district 2 come from the (bigger) district 1's roster."""
    districts = fresh_districts("skew", 3)
    size = DemoSize(districts=3, today=TODAY, seed=5, district_students=(900, 120, 50), district_schools=(5, 2, 1))
    try:
        summary = generate_demo(districts, size)
        assert [summary.row_counts[d.code]["school"] for d in districts] == [5, 2, 1]
        natives = [scalar(d, "select count(*) from demo.roster where origin = 'native'") for d in districts]
        assert natives == [900, 120, 50]
        # Movers keep their state id: every mover into D02 is one of D01's people who moved out.
        movers = query(districts[1], "select state_id from demo.roster where origin = 'mover'")
        moved_out = {r[0] for r in query(districts[0], "select state_id from demo.roster where exit_kind = 'move'")}
        assert movers and {r[0] for r in movers} <= moved_out
        for district in districts:
            assert district.source.database and integrity_problems(district.source.database) == []
    finally:
        drop(districts)
