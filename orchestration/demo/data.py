"""Demo district databases: realistic, deterministic District Edition data on the state's own server.

`generate_demo` (re)creates one PostgreSQL database per district with every table of the contract in
schema `public`, and a `demo` schema holding the simulated clock and the generator's helpers (see
`sql.py`). Small reference tables (schools, calendars, bell schedules, days, codes) are planned in
Python and copied in; people, enrollments and attendance are generated inside PostgreSQL, set-based,
because the BIE-size demo has 8 million student-days.

Every value is a function of the seed: the same `DemoSize` gives identical tables. Districts are
generated independently (two at a time, one per core); a student who moves from district N to N+1 is
rebuilt in the receiving district from the sending district's seed-derived roster, so no district has
to read another's database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import psycopg
from psycopg import sql

from orchestration.demo import sql as demo_sql
from orchestration.demo.calendar import (
    DayKind,
    DistrictCalendar,
    Period,
    district_calendar,
    elementary_schedule,
    school_year_end,
    secondary_schedule,
)
from orchestration.demo.catalog import (
    ATTENDANCE_COMMENTS,
    BEHAVIOR_RESOLUTIONS,
    BEHAVIOR_RESPONSES,
    BEHAVIOR_TYPES,
    DISTRICT_NAMES,
    EXCUSE_CODES,
    FIRST_NAMES,
    LAST_NAMES,
    SCHOOL_PLACES,
)
from orchestration.districts.contract import TABLES, create_table_sql
from orchestration.districts.registry import District, DistrictSource
from orchestration.warehouse import database

# Share of attendance rows typed in days after the date they record (still before "today").
LATE_ENTRY_SHARE = 0.08
CLOCK_QUERY = "select today, seed, end_year, simulated_days from demo.clock"
WORKERS = 2


class DemoDataError(RuntimeError):
    pass


@dataclass(frozen=True)
class DemoSize:
    districts: int = 4
    schools_per_district: int = 4
    students_per_district: int = 1200
    end_year: int | None = None  # None: the school year holding `today` (August to June, end_year = June's year)
    today: dt.date | None = None  # None: date.today(); attendance exists for the days before it
    seed: int = 42
    # A skewed state: students and schools of district 1, 2, ... (empty: every district gets the uniform
    # students_per_district and schools_per_district).
    district_students: tuple[int, ...] = ()
    district_schools: tuple[int, ...] = ()

    def students_of(self, index: int) -> int:
        return self.district_students[index - 1] if self.district_students else self.students_per_district

    def schools_of(self, index: int) -> int:
        return self.district_schools[index - 1] if self.district_schools else self.schools_per_district

    def scaled(self, factor: float) -> DemoSize:
        """The same shape with students and schools per district multiplied by `factor` (at least 50
        students and one school each): a small run of a big size's skew."""
        indexes = range(1, self.districts + 1)
        return replace(self, district_students=tuple(max(50, round(self.students_of(i) * factor)) for i in indexes),
                       district_schools=tuple(max(1, round(self.schools_of(i) * factor)) for i in indexes))

    def resolved_today(self) -> dt.date:
        return self.today or dt.date.today()

    def resolved_end_year(self) -> int:
        return self.end_year or school_year_end(self.resolved_today())

    def validate(self) -> None:
        if self.districts < 1 or self.schools_per_district < 1 or self.students_per_district < 1:
            raise DemoDataError(f"demo size needs at least one district, school and student: {self}")
        if self.districts > 99:
            raise DemoDataError("at most 99 demo districts (state ids and database names assume two digits)")
        # Person ids stay below 100,000 so (district, person) keys and student numbers stay unique.
        if self.students_per_district > 40_000:
            raise DemoDataError("at most 40,000 students per demo district")
        for name, values in (("district_students", self.district_students),
                             ("district_schools", self.district_schools)):
            if values and (len(values) != self.districts or min(values) < 1):
                raise DemoDataError(f"{name} needs one positive number per district ({self.districts}): {values}")
        # A skewed size's big district goes past 100,000 person ids: its student numbers are then unique
        # within the district only (the state keys people by district and person id). State ids need
        # person ids (movers included) below 1,000,000.
        if self.district_students and max(self.district_students) > 400_000:
            raise DemoDataError("at most 400,000 students in one demo district")
        if self.seed < 0:
            raise DemoDataError("the seed must be zero or positive")


def bie_size(today: dt.date | None = None) -> DemoSize:
    """The BIE-like benchmark size: about 46,000 students in 180 schools over the last complete school
    year, with `today` after its end so attendance covers the whole year (~8 million student-days)."""
    end_year = school_year_end(today or dt.date.today()) - 1
    return DemoSize(districts=20, schools_per_district=9, students_per_district=2300, end_year=end_year,
                    today=dt.date(end_year, 7, 1))


BIE_SIZE = bie_size()

# Nevada's shape: 17 districts, about 460,000 students in 650 schools, one (Clark County) with two thirds of
# the students, one (Washoe) with a sixth, the rest small and rural.
NEVADA_STUDENTS = (307_000, 80_000, 14_000, 12_000, 10_000, 8_000, 7_000, 5_000, 4_500, 3_000, 2_500, 2_000, 1_500,
                   1_200, 1_000, 800, 500)
NEVADA_SCHOOLS = (425, 114, 20, 17, 14, 11, 10, 7, 6, 4, 4, 3, 3, 3, 3, 3, 3)


def nevada_size(today: dt.date | None = None) -> DemoSize:
    """The Nevada-like benchmark size over the last complete school year (today after its end)."""
    end_year = school_year_end(today or dt.date.today()) - 1
    return DemoSize(districts=len(NEVADA_STUDENTS), schools_per_district=max(NEVADA_SCHOOLS),
                    students_per_district=max(NEVADA_STUDENTS) // 10, end_year=end_year,
                    today=dt.date(end_year, 7, 1), district_students=NEVADA_STUDENTS,
                    district_schools=NEVADA_SCHOOLS)


@dataclass(frozen=True)
class DemoClock:
    today: dt.date  # attendance exists for dates before this one
    seed: int
    end_year: int
    simulated_days: int


@dataclass(frozen=True)
class DemoSummary:
    today: dt.date
    end_year: int
    seed: int
    districts: tuple[District, ...]
    row_counts: dict[str, dict[str, int]]  # district code -> table -> rows
    student_days: dict[str, int]  # district code -> enrolled instructional student-days before today
    elapsed_seconds: float

    def total(self, table: str) -> int:
        return sum(counts[table] for counts in self.row_counts.values())

    def describe(self) -> str:
        year = f"{self.end_year - 1}-{str(self.end_year)[2:]}"
        lines = [
            f"Generated {len(self.districts)} demo district database(s) for school year {year} (seed {self.seed}) "
            f"in {self.elapsed_seconds:.1f} s.",
            f"Simulated today: {self.today.isoformat()} (attendance through "
            f"{(self.today - dt.timedelta(days=1)).isoformat()}).",
        ]
        for district in self.districts:
            counts = self.row_counts[district.code]
            lines.append(
                f"  {district.code} {district.name} ({district.source.database}): {counts['school']} schools, "
                f"{counts['person']:,} people, {counts['enrollment']:,} enrollments, "
                f"{counts['attendance']:,} attendance rows, {self.student_days[district.code]:,} student-days"
            )
        lines.append("  rows per table, all districts: " + ", ".join(
            f"{spec.name} {self.total(spec.name):,}" for spec in TABLES))
        lines.append(f"  enrolled student-days so far: {sum(self.student_days.values()):,}")
        return "\n".join(lines)


def demo_registry(count: int) -> list[District]:
    """Registry entries D01..Dnn for the demo districts, each a database on the state's own server."""
    districts = []
    for index in range(1, count + 1):
        name = DISTRICT_NAMES[index - 1] if index <= len(DISTRICT_NAMES) else f"Demo District {index:02d}"
        districts.append(District(code=f"D{index:02d}", name=name,
                                  source=DistrictSource(kind="database", database=f"demo_d{index:02d}")))
    return districts


def salt(seed: int, district_index: int, purpose: str) -> int:
    """A 56-bit salt for demo.u: independent streams per seed, district and purpose, with room for the
    small offsets the SQL adds without overflowing bigint."""
    digest = hashlib.blake2b(f"{seed}:{district_index}:{purpose}".encode(), digest_size=7).digest()
    return int.from_bytes(digest, "big")


# ---------------------------------------------------------------------------------------------------------
# Planning the reference tables (small: a few thousand rows per district)
# ---------------------------------------------------------------------------------------------------------

LEVEL_NAMES = {"E": "Elementary", "M": "Middle School", "H": "High School", "PK": "Preschool"}


def school_levels(count: int) -> list[str]:
    """Elementary schools outnumber middle and high schools about three to one."""
    if count == 1:
        return ["E"]
    if count == 2:
        return ["E", "H"]
    high = max(1, round(count * 0.2))
    middle = max(1, round(count * 0.2))
    return ["E"] * (count - high - middle) + ["M"] * middle + ["H"] * high


def grade_spans(levels: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Grades per level, kindergarten = 0; without a middle school the high school serves 6-12."""
    if "M" in levels:
        return {"E": (0, 5), "M": (6, 8), "H": (9, 12), "PK": (-1, -1)}
    if "H" in levels:
        return {"E": (0, 5), "H": (6, 12), "PK": (-1, -1)}
    return {"E": (0, 5), "PK": (-1, -1)}


@dataclass
class DistrictPlan:
    index: int
    calendar: DistrictCalendar
    max_grade: int
    rows: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # contract table -> rows
    demo_rows: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)  # demo table -> rows


@dataclass
class _Ids:
    """Per-table id counters: ids are unique within one district only."""

    counters: dict[str, int] = field(default_factory=dict)

    def next(self, table: str) -> int:
        self.counters[table] = self.counters.get(table, 0) + 1
        return self.counters[table]


def _stamp(day: dt.date, hour: int, minute: int, cap: dt.datetime) -> dt.datetime:
    return min(dt.datetime.combine(day, dt.time(hour, minute)), cap)


def _excuse_code(code_style: int, mnemonic: str, state_code: str) -> str:
    # Districts name their codes differently: mnemonics in some, state-style codes (AE1, TU1) in others.
    return mnemonic if code_style == 0 else f"{state_code[:2]}{int(state_code[2:])}"


def plan_district(index: int, size: DemoSize, calendar: DistrictCalendar, today: dt.date) -> DistrictPlan:
    rng = random.Random(f"district:{size.seed}:{index}:{calendar.end_year}")
    end_year = calendar.end_year
    label = f"{end_year - 1}-{str(end_year)[2:]}"
    cap = dt.datetime.combine(today - dt.timedelta(days=1), dt.time(17, 0))
    created = _stamp(calendar.start_date - dt.timedelta(days=40), 14, 5, cap)
    levels = school_levels(size.schools_of(index))
    spans = grade_spans(levels)
    plan = DistrictPlan(index=index, calendar=calendar, max_grade=max(hi for _, hi in spans.values()))
    ids = _Ids()
    rows = plan.rows
    for spec in TABLES:
        rows[spec.name] = []
    for name in ("calendar_pick", "schedule_info", "period_info"):
        plan.demo_rows[name] = []

    rows["school_year"] = [
        {"end_year": end_year - 1, "label": f"{end_year - 2}-{str(end_year - 1)[2:]}", "active": False},
        {"end_year": end_year, "label": label, "active": True},
    ]
    places = rng.sample(SCHOOL_PLACES, k=min(len(SCHOOL_PLACES), len(levels)))
    places += [f"{SCHOOL_PLACES[i % len(SCHOOL_PLACES)]} {i // len(SCHOOL_PLACES) + 1}"
               for i in range(len(places), len(levels))]

    calendars: list[tuple[int, int, str]] = []  # (calendar_id, school_id, level)
    for number, (level, place) in enumerate(zip(levels, places, strict=True), start=1):
        school_id = ids.next("school")
        level_name = "Junior/Senior High School" if level == "H" and spans["H"][0] == 6 else LEVEL_NAMES[level]
        school_name = f"{place} {level_name}"
        rows["school"].append({"school_id": school_id, "number": f"{100 + number}", "name": school_name,
                               "state_school_code": f"{index:02d}-{1000 + 10 * number}"})
        levels_here = [level] + (["PK"] if level == "E" and number == 1 else [])
        for calendar_level in levels_here:
            calendar_id = ids.next("calendar")
            calendars.append((calendar_id, school_id, calendar_level))
            name = f"{label} {school_name}" + (" Preschool" if calendar_level == "PK" else "")
            _plan_calendar(plan, ids, rng, calendar_id, school_id, calendar_level, name, created, cap)

    _plan_calendar_pick(plan, calendars, spans)
    return plan


def _schedules_for(level: str, periods: int) -> dict[str, list[Period]]:
    if level in ("E", "PK"):
        return {"Regular": elementary_schedule(False, preschool=level == "PK"),
                "Early Release": elementary_schedule(True, preschool=level == "PK")}
    return {"Regular": secondary_schedule(periods, False), "Early Release": secondary_schedule(periods, True)}


def _plan_calendar(plan: DistrictPlan, ids: _Ids, rng: random.Random, calendar_id: int, school_id: int,
                   level: str, name: str, created: dt.datetime, cap: dt.datetime) -> None:
    rows = plan.rows
    calendar = plan.calendar
    periods = 7 if level == "M" else rng.choice((6, 7, 8))
    schedules = _schedules_for(level, periods)
    regular_minutes = sum(p.minutes for p in schedules["Regular"] if not p.non_instructional)
    # Calendars set their own day thresholds about half the time; otherwise the 50% / 25% defaults apply.
    threshold_draw = rng.random()
    whole = 5 * round(regular_minutes * 0.6 / 5) if threshold_draw >= 0.45 else None
    half = 5 * round(regular_minutes * 0.3 / 5) if threshold_draw >= 0.8 or 0.45 <= threshold_draw < 0.65 else None
    rows["calendar"].append({
        "calendar_id": calendar_id, "school_id": school_id, "end_year": calendar.end_year, "name": name,
        "start_date": calendar.start_date, "end_date": calendar.end_date,
        "whole_day_absence_minutes": whole, "half_day_absence_minutes": half,
        # Preschool is outside the state's attendance reporting.
        "exclude": level == "PK", "modified_date": created,
    })

    schedule_ids: dict[str, int] = {}
    ranks: dict[str, dict[int, int]] = {}
    for schedule_name, schedule in schedules.items():
        schedule_id = ids.next("period_schedule")
        schedule_ids[schedule_name] = schedule_id
        rows["period_schedule"].append({"period_schedule_id": schedule_id, "calendar_id": calendar_id,
                                        "name": schedule_name})
        ranks[schedule_name] = {}
        lunch_id = None
        for seq, period in enumerate(schedule, start=1):
            period_id = ids.next("period")
            rows["period"].append({
                "period_id": period_id, "period_schedule_id": schedule_id, "name": period.name, "seq": seq,
                "start_time": period.start, "end_time": period.end, "period_minutes": period.minutes,
                "non_instructional": period.non_instructional,
            })
            if period.non_instructional:
                lunch_id = period_id
            else:
                ranks[schedule_name][len(ranks[schedule_name]) + 1] = period_id
        plan.demo_rows["schedule_info"].append((schedule_id, calendar_id, len(ranks[schedule_name]), lunch_id))
    minutes = {row["period_id"]: row["period_minutes"] for row in rows["period"]}
    for schedule_name, by_rank in ranks.items():
        other = ranks["Early Release" if schedule_name == "Regular" else "Regular"]
        for rank, period_id in by_rank.items():
            plan.demo_rows["period_info"].append(
                (period_id, schedule_ids[schedule_name], rank, minutes[period_id], other.get(rank)))

    _plan_days(plan, ids, calendar_id, level, schedule_ids, created, cap)
    _plan_codes(plan, ids, calendar_id, level, created)


def _plan_days(plan: DistrictPlan, ids: _Ids, calendar_id: int, level: str, schedule_ids: dict[str, int],
               created: dt.datetime, cap: dt.datetime) -> None:
    calendar = plan.calendar
    student_days = calendar.student_days
    field_day = student_days[-3] if level == "E" else None
    testing_day = next((d.date for d in calendar.days if level == "H" and d.date.month == 4
                        and d.kind == DayKind.INSTRUCTION), None)
    for day in calendar.days:
        schedule: int | None = None
        instruction = attendance = False
        comment = day.comment
        modified = created
        if day.kind in (DayKind.INSTRUCTION, DayKind.EARLY_RELEASE) or (
                day.kind == DayKind.CONFERENCE and level in ("M", "H")):
            instruction = attendance = True
            schedule = schedule_ids["Early Release" if day.kind == DayKind.EARLY_RELEASE else "Regular"]
        elif day.kind == DayKind.CONFERENCE:
            comment = "Parent-teacher conferences (no school)"
        if day.date == field_day:
            # Class is held but attendance is not taken.
            attendance = False
            comment = "Field day (no attendance taken)"
            modified = _stamp(dt.date(calendar.end_year, 1, 12), 10, 30, cap)
        if day.date == testing_day:
            # Instructional, but nobody attached a bell schedule: no scheduled minutes that day.
            schedule = None
            comment = "State testing"
            modified = _stamp(dt.date(calendar.end_year, 2, 2), 9, 45, cap)
        plan.rows["day"].append({
            "day_id": ids.next("day"), "calendar_id": calendar_id, "date": day.date, "period_schedule_id": schedule,
            "instruction": instruction, "attendance": attendance, "comments": comment, "modified_date": modified,
        })


def _plan_codes(plan: DistrictPlan, ids: _Ids, calendar_id: int, level: str, created: dt.datetime) -> None:
    rows = plan.rows
    code_style = plan.index % 2
    for excuse in EXCUSE_CODES:
        if level in ("E", "PK") and not excuse.elementary:
            continue
        rows["attendance_excuse"].append({
            "excuse_id": ids.next("attendance_excuse"), "calendar_id": calendar_id,
            "code": _excuse_code(code_style, excuse.mnemonic, excuse.state_code), "description": excuse.description,
            "status": excuse.status, "excuse": excuse.excuse, "state_code": excuse.state_code,
            "active": excuse.active, "modified_date": created,
        })
    for code, name, category, state_code, active in BEHAVIOR_TYPES:
        rows["behavior_type"].append({"type_id": ids.next("behavior_type"), "calendar_id": calendar_id, "code": code,
                                      "name": name, "category": category, "state_event_code": state_code,
                                      "active": active})
    for code, name, state_code, active in BEHAVIOR_RESPONSES:
        rows["behavior_response_type"].append({
            "response_type_id": ids.next("behavior_response_type"), "calendar_id": calendar_id, "code": code,
            "name": name, "state_response_code": state_code, "active": active})
    for code, name, state_code, active in BEHAVIOR_RESOLUTIONS:
        rows["behavior_resolution_type"].append({
            "resolution_type_id": ids.next("behavior_resolution_type"), "calendar_id": calendar_id, "code": code,
            "name": name, "state_resolution_code": state_code, "active": active})


def _plan_calendar_pick(plan: DistrictPlan, calendars: list[tuple[int, int, str]],
                        spans: dict[str, tuple[int, int]]) -> None:
    main = [c for c in calendars if c[2] != "PK"]
    secondary = [c for c in main if c[2] in ("M", "H")]
    for calendar_id, school_id, level in calendars:
        same_level = [c for c in calendars if c[2] == level]
        lo, hi = spans[level]
        plan.demo_rows["calendar_pick"].append((
            calendar_id, school_id, level, lo, hi,
            same_level.index((calendar_id, school_id, level)), len(same_level),
            main.index((calendar_id, school_id, level)) if level != "PK" else None, len(main),
            secondary.index((calendar_id, school_id, level)) if level in ("M", "H") else None, len(secondary),
        ))


# ---------------------------------------------------------------------------------------------------------
# Writing a district database
# ---------------------------------------------------------------------------------------------------------

DEMO_TABLE_COLUMNS = {
    "calendar_pick": ("calendar_id", "school_id", "level", "grade_lo", "grade_hi", "level_rank", "level_count",
                      "global_rank", "global_count", "secondary_rank", "secondary_count"),
    "schedule_info": ("period_schedule_id", "calendar_id", "n_instr", "lunch_period_id"),
    "period_info": ("period_id", "period_schedule_id", "irank", "period_minutes", "other_period_id"),
}


def _copy_rows(conn: psycopg.Connection, schema: str, table: str, columns: Sequence[str],
               rows: Sequence[Sequence[object]]) -> None:
    statement = sql.SQL("copy {}.{} ({}) from stdin").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


@dataclass(frozen=True)
class _Job:
    district: District
    index: int
    count: int
    size: DemoSize
    today: dt.date
    calendar: DistrictCalendar
    source_calendar: DistrictCalendar  # the district whose movers arrive here (the previous one)


def _fill_district(job: _Job) -> tuple[dict[str, int], int]:
    """Fill one district database in one transaction; returns row counts and enrolled student-days."""
    plan = plan_district(job.index, job.size, job.calendar, job.today)
    with database.connect(district_database(job.district)) as conn:
        conn.execute("set local synchronous_commit = off")
        _create_schema(conn)
        _copy_plan(conn, job, plan)
        _generate_people(conn, job, plan)
        _generate_attendance(conn, job)
        conn.execute(demo_sql.INDEXES)
        conn.execute("analyze")
        counts = {spec.name: _count(conn, spec.name) for spec in TABLES}
        student_days = conn.execute(demo_sql.STUDENT_DAYS, {"today": job.today}).fetchone()
        conn.commit()
    return counts, int(student_days[0]) if student_days else 0


def _create_schema(conn: psycopg.Connection) -> None:
    for spec in TABLES:
        conn.execute(create_table_sql(spec, "public"))
    conn.execute(demo_sql.DEMO_SCHEMA)
    conn.execute(demo_sql.EXCUSE_SLOT_VIEW)
    conn.execute(demo_sql.NATIVE_STUDENTS_FUNCTION)


def _copy_plan(conn: psycopg.Connection, job: _Job, plan: DistrictPlan) -> None:
    for spec in TABLES:
        _copy_rows(conn, "public", spec.name, spec.column_names,
                   [tuple(row[c] for c in spec.column_names) for row in plan.rows[spec.name]])
    for table, columns in DEMO_TABLE_COLUMNS.items():
        _copy_rows(conn, "demo", table, columns, plan.demo_rows[table])
    conn.execute(
        "insert into demo.settings values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (job.index, job.count, job.district.code, job.size.seed, job.calendar.end_year,
         job.size.students_of(job.index), job.size.schools_of(job.index), plan.max_grade, job.calendar.first_day,
         job.calendar.last_day))
    conn.execute("insert into demo.clock (today, seed, end_year) values (%s, %s, %s)",
                 (job.today, job.size.seed, job.calendar.end_year))


def _generate_people(conn: psycopg.Connection, job: _Job, plan: DistrictPlan) -> None:
    seed = job.size.seed
    source_index = job.index - 1 if job.index > 1 else job.count
    params: dict[str, object] = {
        "district": job.index, "students": job.size.students_of(job.index), "today": job.today,
        "source_students": job.size.students_of(source_index),
        "first_day": job.calendar.first_day, "last_day": job.calendar.last_day, "seed": seed,
        "salt": salt(seed, job.index, "people"), "max_grade": plan.max_grade,
        "first_names": list(FIRST_NAMES), "last_names": list(LAST_NAMES),
        "stamp_cap": dt.datetime.combine(job.today - dt.timedelta(days=1), dt.time(17, 0)),
        "source_district": source_index, "source_first_day": job.source_calendar.first_day,
        "source_last_day": job.source_calendar.last_day, "source_salt": salt(seed, source_index, "people"),
    }
    conn.execute(demo_sql.ROSTER_NATIVE, params)
    if job.count > 1:
        conn.execute(demo_sql.ROSTER_MOVERS, params)
    conn.execute("analyze demo.roster")
    conn.execute(demo_sql.PERSONS_FROM_ROSTER, params)
    conn.execute(demo_sql.ENROLLMENTS_FROM_ROSTER, params)
    conn.execute(demo_sql.PROFILES, {"salt": salt(seed, job.index, "profile")})
    # Fresh tables have no statistics; the attendance statement's joins need them.
    conn.execute("analyze public.enrollment; analyze public.day; analyze demo.profile; analyze public.period")


def _generate_attendance(conn: psycopg.Connection, job: _Job) -> None:
    attendance_salt = salt(job.size.seed, job.index, "attendance")
    conn.execute(demo_sql.ATTENDANCE, {
        "from_date": job.calendar.start_date, "to_date": job.today, "stamp_before": job.today,
        "salt": attendance_salt, "base_id": 0, "late_share": LATE_ENTRY_SHARE,
        "comments": list(ATTENDANCE_COMMENTS),
    })
    conn.execute(demo_sql.ATTENDANCE_DUPLICATES,
                 {"salt": attendance_salt, "base_id": max_id(conn, "attendance", "attendance_id")})


def max_id(conn: psycopg.Connection, table: str, column: str) -> int:
    row = conn.execute(sql.SQL("select coalesce(max({}), 0) from public.{}").format(
        sql.Identifier(column), sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(sql.SQL("select count(*) from public.{}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def district_database(district: District) -> str:
    if district.source.kind != "database" or not district.source.database:
        raise DemoDataError(f"district {district.code}: demo data goes only into databases on the state server "
                            f"(source kind 'database'), not {district.source.describe()}")
    return district.source.database


def generate_demo(districts: list[District], size: DemoSize) -> DemoSummary:
    """(Re)create every district's database and fill it; returns row counts and the simulated today."""
    started = time.perf_counter()
    size.validate()
    if not districts:
        raise DemoDataError("no districts to generate")
    names = [district_database(district) for district in districts]
    today = size.resolved_today()
    end_year = size.resolved_end_year()
    calendars = [district_calendar(end_year, size.seed, index) for index in range(1, len(districts) + 1)]
    settings = database.ensure_server()
    # Serially: CREATE DATABASE copies template1 and two at once can trip over each other.
    for name in names:
        database.drop_database(name, settings)
        database.ensure_database(name, settings)
    count = len(districts)
    jobs = [
        _Job(district=district, index=index, count=count, size=size, today=today, calendar=calendars[index - 1],
             source_calendar=calendars[(index - 2) % count])
        for index, district in enumerate(districts, start=1)
    ]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(_fill_district, jobs))
    return DemoSummary(
        today=today, end_year=end_year, seed=size.seed, districts=tuple(districts),
        row_counts={job.district.code: result[0] for job, result in zip(jobs, results, strict=True)},
        student_days={job.district.code: result[1] for job, result in zip(jobs, results, strict=True)},
        elapsed_seconds=time.perf_counter() - started,
    )


def read_clock(districts: list[District],
               connections: Mapping[str, psycopg.Connection] | None = None) -> DemoClock:
    """The simulated clock kept with the demo data; every district must agree on it. `connections`
    (district code -> open connection) reads it inside transactions the caller holds."""
    clocks: dict[str, DemoClock] = {}
    for district in districts:
        name = district_database(district)
        try:
            if connections is not None:
                row = connections[district.code].execute(CLOCK_QUERY).fetchone()
            else:
                with database.connect(name) as conn:
                    row = conn.execute(CLOCK_QUERY).fetchone()
        except (psycopg.OperationalError, psycopg.errors.UndefinedTable) as error:
            raise DemoDataError(f"district {district.code}: no demo data in database {name} "
                                "(run `attendance-sync demo-data` first)") from error
        if row is None:
            raise DemoDataError(f"district {district.code}: database {name} has an empty demo clock")
        clocks[district.code] = DemoClock(today=row[0], seed=int(row[1]), end_year=int(row[2]),
                                          simulated_days=int(row[3]))
    distinct = {(clock.today, clock.seed, clock.end_year) for clock in clocks.values()}
    if len(distinct) > 1:
        listing = ", ".join(f"{code}: {clock.today} seed {clock.seed}" for code, clock in clocks.items())
        raise DemoDataError(f"the demo districts disagree on the simulated clock ({listing}); "
                            "regenerate them together with `attendance-sync demo-data`")
    return next(iter(clocks.values()))
