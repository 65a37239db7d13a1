"""The state reports against hand-computed figures, built through the whole chain: two small district
databases -> landing loader -> dbt (state models, att_day_aggregation, reports) on a real PostgreSQL.

The districts (as of 2025-09-16; twelve attendance days, Mon 1 .. Tue 16 September; every period
schedule has 360 instructional minutes, so a whole-day absence is >= 180 minutes and a half day >= 90):

RA, school 1 "Alpha", calendar 10 (reported) and calendar 11 (exclude = true):
  person 1 (SA): absent all day on 3 and 10 Sep (unexcused)             -> 2.0 absent of 12, chronic
                 also enrolled in the excluded calendar 11, absent there -> not in any report
  person 2 (SB): absent period 1 (120 min) on 4 Sep with excuse code 31 -> 0.5 (excused);
                 tardy on 5 Sep, 20 minutes missed (< 90)                -> 0
  person 3 (SC): enrolled until 8 Sep (6 days), absent all day on 2 Sep with an empty excuse (unknown)
  person 4 (no state_id): present every day
  person 5 (SD): a no-show enrollment -> no rows
  a holiday on 29 Aug and days on 17-18 Sep (after the as-of date) do not count
RB, school 5 "Beta", calendar 50:
  person 30 (SC, the student who moved): enrolled from 9 Sep (6 days), absent period 1 on 11 Sep
                 with excuse code 35 -> 0.5
  person 31 (SE): present every day
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pytest

from orchestration.dbt import runner as dbt_runner
from orchestration.districts.contract import TABLES, create_table_sql
from orchestration.districts.registry import District, DistrictSource
from orchestration.landing.load import load_districts
from orchestration.warehouse import database
from tests.support.warehouse import state_database, unique_name

AS_OF = date(2025, 9, 16)
SCHOOL_DAYS = [date(2025, 9, 1) + timedelta(days=n) for n in range(18)
               if (date(2025, 9, 1) + timedelta(days=n)).weekday() < 5]  # 1 .. 18 Sep, 14 weekdays
TS = "2025-08-20 08:00"


def days_sql(calendar_id: int, schedule_id: int, first_day_id: int) -> str:
    rows = [f"({first_day_id + n}, {calendar_id}, '{day}', {schedule_id}, true, true, null, '{TS}')"
            for n, day in enumerate(SCHOOL_DAYS)]
    return "insert into day values " + ", ".join(rows) + ";"


def absent_all_day(first_id: int, person: int, calendar: int, day: str, periods: tuple[int, ...],
                   excuse: str) -> str:
    return ", ".join(f"({first_id + n}, {person}, {calendar}, {period}, '{day}', 'A', '{excuse}', null, null, "
                     f"null, '{TS}')" for n, period in enumerate(periods))


DISTRICT_RA = f"""
insert into school values (1, '001', 'Alpha', 'SA1');
insert into school_year values (2026, '2025-26', true);
insert into calendar values
    (10, 1, 2026, 'Alpha 25-26', '2025-08-25', '2026-05-29', null, null, false, '{TS}'),
    (11, 1, 2026, 'Alpha program', '2025-08-25', '2026-05-29', null, null, true, '{TS}');
insert into period_schedule values (100, 10, 'Regular'), (110, 11, 'Program');
insert into period values
    (1, 100, 'P1', 1, '08:00', '10:00', 120, false), (2, 100, 'P2', 2, '10:00', '12:00', 120, false),
    (3, 100, 'Lunch', 3, '12:00', '12:30', 30, true), (4, 100, 'P3', 4, '12:30', '14:30', 120, false),
    (11, 110, 'Day', 1, '08:00', '14:00', 360, false);
{days_sql(10, 100, 1000)}
{days_sql(11, 110, 1100)}
insert into day values (999, 10, '2025-08-29', null, false, false, 'Holiday', '{TS}');
insert into person values
    (1, 'SA', '1', 'Ames', 'Ann', '2012-01-01', 'F', '{TS}'),
    (2, 'SB', '2', 'Burr', 'Bo', '2012-01-01', 'M', '{TS}'),
    (3, 'SC', '3', 'Cole', 'Cy', '2012-01-01', 'M', '{TS}'),
    (4, null, '4', 'Dunn', 'Di', '2012-01-01', 'F', '{TS}'),
    (5, 'SD', '5', 'Eyre', 'Ed', '2012-01-01', 'M', '{TS}');
insert into enrollment values
    (1, 1, 10, '08', '2025-08-25', null, 'P', false, '{TS}'),
    (2, 2, 10, '08', '2025-08-25', null, 'P', false, '{TS}'),
    (3, 3, 10, '08', '2025-08-25', '2025-09-08', 'P', false, '{TS}'),
    (4, 4, 10, '08', '2025-08-25', null, 'P', false, '{TS}'),
    (5, 5, 10, '08', '2025-08-25', null, 'P', true, '{TS}'),
    (6, 1, 11, '08', '2025-08-25', null, 'S', false, '{TS}');
insert into attendance_excuse values (31, 10, 'EXC', 'Excused', 'A', 'E', 'E1', true, '{TS}');
insert into attendance values
    {absent_all_day(100, 1, 10, '2025-09-03', (1, 2, 4), 'U')},
    {absent_all_day(110, 1, 10, '2025-09-10', (1, 2, 4), 'U')},
    {absent_all_day(120, 1, 11, '2025-09-03', (11,), 'U')},
    (130, 2, 10, 1, '2025-09-04', 'A', '', 31, null, null, '{TS}'),
    (131, 2, 10, 1, '2025-09-05', 'T', 'U', null, 100, 'bus', '{TS}'),
    {absent_all_day(140, 3, 10, '2025-09-02', (1, 2, 4), '')};
"""

DISTRICT_RB = f"""
insert into school values (5, '005', 'Beta', 'SB5');
insert into school_year values (2026, '2025-26', true);
insert into calendar values (50, 5, 2026, 'Beta 25-26', '2025-08-25', '2026-05-29', null, null, false, '{TS}');
insert into period_schedule values (500, 50, 'Regular');
insert into period values
    (51, 500, 'P1', 1, '08:00', '10:00', 120, false), (52, 500, 'P2', 2, '10:00', '12:00', 120, false),
    (53, 500, 'P3', 3, '12:30', '14:30', 120, false);
{days_sql(50, 500, 5000)}
insert into person values
    (30, 'SC', '30', 'Cole', 'Cy', '2012-01-01', 'M', '{TS}'),
    (31, 'SE', '31', 'Fisk', 'Fay', '2012-01-01', 'F', '{TS}');
insert into enrollment values
    (300, 30, 50, '08', '2025-09-09', null, 'P', false, '{TS}'),
    (301, 31, 50, '07', '2025-08-25', null, 'P', false, '{TS}');
insert into attendance_excuse values (35, 50, 'MED', 'Medical', 'A', 'E', 'E2', true, '{TS}');
insert into attendance values (300, 30, 50, 51, '2025-09-11', 'A', 'U', 35, null, null, '{TS}');
"""


def create_district(name: str, rows: str) -> None:
    database.ensure_database(name)
    with database.connect(name, autocommit=True) as conn:
        for spec in TABLES:
            conn.execute(create_table_sql(spec, "public"))
        conn.execute(rows)


@pytest.fixture(scope="module")
def reports() -> Iterator[psycopg.Connection]:
    sources = {"RA": unique_name("district_ra"), "RB": unique_name("district_rb")}
    try:
        with state_database("test_dbt_reports"):
            create_district(sources["RA"], DISTRICT_RA)
            create_district(sources["RB"], DISTRICT_RB)
            results = load_districts([District(code, code, DistrictSource("database", database=source))
                                      for code, source in sources.items()])
            assert all(result.ok for result in results), [result.error for result in results]
            build = dbt_runner.run_dbt(["build"], as_of_date=AS_OF)
            assert build.success, build.failure_message
            statuses = {node.unique_id: node.status for node in build.nodes}
            unit_tests = [uid for uid in statuses if uid.startswith("unit_test.attendance_sync.")]
            assert len([uid for uid in unit_tests if "attendance" in uid]) >= 3
            assert all(statuses[uid] == "pass" for uid in unit_tests)
            with database.connect(autocommit=True) as conn:
                yield conn
    finally:
        for source in sources.values():
            database.drop_database(source)


D = Decimal


def test_student_attendance(reports: psycopg.Connection) -> None:
    got = {row[:4]: row[4:] for row in reports.execute(
        "select district_code, school_id, end_year, person_id, state_id, enrolled_days, present_days, absent_days, "
        "unexcused_absent_days, attendance_rate, chronically_absent from reports.student_attendance").fetchall()}
    assert got == {
        ("RA", 1, 2026, 1): ("SA", 12, D("10.0"), D("2.0"), D("2.0"), D("0.8333"), True),
        ("RA", 1, 2026, 2): ("SB", 12, D("11.5"), D("0.5"), D("0.0"), D("0.9583"), False),
        ("RA", 1, 2026, 3): ("SC", 6, D("5.0"), D("1.0"), D("1.0"), D("0.8333"), False),
        ("RA", 1, 2026, 4): (None, 12, D("12.0"), D("0.0"), D("0.0"), D("1.0000"), False),
        ("RB", 5, 2026, 30): ("SC", 6, D("5.5"), D("0.5"), D("0.0"), D("0.9167"), False),
        ("RB", 5, 2026, 31): ("SE", 12, D("12.0"), D("0.0"), D("0.0"), D("1.0000"), False),
    }


def test_school_attendance(reports: psycopg.Connection) -> None:
    got = {row[:3]: row[3:] for row in reports.execute(
        "select district_code, school_id, end_year, school_name, as_of_date, instructional_days, students, "
        "enrolled_days, present_days, adm, ada, students_enrolled_10_days, chronically_absent_students, "
        "chronic_absence_rate from reports.school_attendance").fetchall()}
    assert got == {
        # ADM 42 / 12, ADA 38.5 / 12; chronic: person 1 of persons 1, 2 and 4 (person 3 has 6 days).
        ("RA", 1, 2026): ("Alpha", AS_OF, 12, 4, 42, D("38.5"), D("3.5000"), D("3.2083"), 3, 1, D("0.3333")),
        # ADM 18 / 12, ADA 17.5 / 12; only person 31 has 10 days, and is not chronic.
        ("RB", 5, 2026): ("Beta", AS_OF, 12, 2, 18, D("17.5"), D("1.5000"), D("1.4583"), 1, 0, D("0.0000")),
    }


def test_statewide_student_attendance_judges_a_student_who_moved_on_the_whole_year(
        reports: psycopg.Connection) -> None:
    got = {row[:2]: row[2:] for row in reports.execute(
        "select state_id, end_year, districts, school_enrollments, enrolled_days, present_days, absent_days, "
        "unexcused_absent_days, attendance_rate, chronically_absent "
        "from reports.statewide_student_attendance").fetchall()}
    assert got == {
        ("SA", 2026): (1, 1, 12, D("10.0"), D("2.0"), D("2.0"), D("0.8333"), True),
        ("SB", 2026): (1, 1, 12, D("11.5"), D("0.5"), D("0.0"), D("0.9583"), False),
        # 6 days in each district (neither has 10), 1.5 absent of 12 >= 10 %: chronic statewide.
        ("SC", 2026): (2, 2, 12, D("10.5"), D("1.5"), D("1.0"), D("0.8750"), True),
        ("SE", 2026): (1, 1, 12, D("12.0"), D("0.0"), D("0.0"), D("1.0000"), False),
    }


def test_excluded_calendar_is_aggregated_but_not_reported(reports: psycopg.Connection) -> None:
    counts = dict(reports.execute(
        "select calendar_id, count(*) from state.att_day_aggregation where district_code = 'RA' "
        "and person_id = 1 group by 1").fetchall())
    assert counts == {10: 12, 11: 12}


def test_readers_may_select_the_reports(reports: psycopg.Connection) -> None:
    for table in ("student_attendance", "school_attendance", "statewide_student_attendance"):
        granted = reports.execute("select has_table_privilege('attendance_read', %s, 'select')",
                                  (f"reports.{table}",)).fetchone()
        assert granted == (True,), table


def test_headline_figures_statewide_and_per_district(reports: psycopg.Connection) -> None:
    from orchestration.monitoring.report_headlines import report_headline_metadata

    assert report_headline_metadata(reports) == {
        "school year": 2026,
        # SA and SC (whole year across both districts) of SA, SB, SC, SE; person 4 has no state_id.
        "chronic absence % (statewide)": 50.0,
        "ADA (statewide)": 4.7, "ADM (statewide)": 5.0,  # 3.2083 + 1.4583; 3.5 + 1.5
        # RA: person 1 of persons 1, 2 and 4; RB: person 31 only, not chronic.
        "chronic absence % (RA)": 33.3, "ADA (RA)": 3.2, "ADM (RA)": 3.5,
        "chronic absence % (RB)": 0.0, "ADA (RB)": 1.5, "ADM (RB)": 1.5,
    }
