"""Simulated school days: advance the demo clock and apply each day's district activity.

One simulated day D (the first school day on or after the clock's "today") is what a district's office
and teachers do on D: take D's attendance, correct earlier days (backdated up to three weeks), delete rows
entered in error, enroll and withdraw students, reclassify an excuse code, close a calendar day. Every
touched row gets a `modified_date` on D. The clock then moves to the next school day after D, so, as after
generation, attendance exists for the dates before the clock's today.

D's attendance is drawn with the generator's own model and salt, so simulating a day gives that day the
attendance a generator run with a later "today" would have given it.

Each district is changed in one transaction for the whole run, all committed one after another at the end:
a failure while simulating leaves every district (and its clock) as it was. The clock table is locked for
the run, so a second simulation waits and then starts from the clock the first one left.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

import psycopg

from orchestration.demo import sql as demo_sql
from orchestration.demo.catalog import ATTENDANCE_COMMENTS, FIRST_NAMES, LAST_NAMES
from orchestration.demo.data import DemoDataError, district_database, max_id, read_clock, salt
from orchestration.districts.registry import District
from orchestration.warehouse import database

# Chance, per district and day, of the rarer activities beyond the one district that always gets them.
RECLASSIFY_ODDS = 0.15
CLOSURE_ODDS = 0.05

NEW_STUDENTS = """
insert into demo.roster (person_id, source_index, origin, state_id, last_name, first_name, birth_date, gender, grade,
                         start_date, end_date, exit_kind, no_show, u_school, u_extra)
select %(max_person)s::integer + g, g, 'simulated',
    case when demo.u(g, %(salt)s::bigint + 1) < 0.015 then null
         else (1000000000 + ((%(district)s::bigint * 1000000 + %(max_person)s::integer + g) * 387420489
                             + %(state_seed)s::bigint * 7919) %% 1000000000)::text end,
    (%(last_names)s::text[])[
        1 + floor(demo.u(g, %(salt)s::bigint + 2) * cardinality(%(last_names)s::text[]))::integer],
    (%(first_names)s::text[])[
        1 + floor(demo.u(g, %(salt)s::bigint + 3) * cardinality(%(first_names)s::text[]))::integer],
    make_date(%(end_year)s::integer - 6 - grade, 9, 1) - floor(demo.u(g, %(salt)s::bigint + 4) * 365)::integer,
    case when demo.u(g, %(salt)s::bigint + 5) < 0.49 then 'F' else 'M' end,
    grade, %(day)s::date, null, null, false, demo.u(g, %(salt)s::bigint + 6), demo.u(g, %(salt)s::bigint + 7)
from (
    select g, least(%(max_grade)s::integer,
                    floor(demo.u(g, %(salt)s::bigint + 8) * (%(max_grade)s::integer + 1))::integer) as grade
    from generate_series(1, %(count)s::integer) as g
) as drawn
"""

NEW_PERSONS = """
insert into public.person (person_id, state_id, student_number, last_name, first_name, birth_date, gender,
                           modified_date)
select person_id, state_id, lpad((%(district)s::integer * 100000 + person_id)::text, 7, '0'), last_name,
       first_name, birth_date, gender, %(stamp)s::timestamp
from demo.roster
where person_id > %(max_person)s::integer
"""

NEW_ENROLLMENTS = f"""
insert into public.enrollment (enrollment_id, person_id, calendar_id, grade, start_date, end_date, service_type,
                               no_show, modified_date)
select %(max_enrollment)s::integer + row_number() over (order by r.person_id), r.person_id, cp.calendar_id,
       {demo_sql.GRADE_TEXT.format(g="r.grade")}, r.start_date, null, 'P', false, %(stamp)s::timestamp
from demo.roster as r
join demo.calendar_pick as cp
    on r.grade between cp.grade_lo and cp.grade_hi and cp.level_rank = floor(r.u_school * cp.level_count)::integer
where r.person_id > %(max_person)s::integer
"""

# Withdrawals are often keyed in a few days after the student's last day.
WITHDRAWALS = """
update public.enrollment as e
set end_date = greatest(e.start_date,
                        %(day)s::date - 1 - floor(demo.u(e.enrollment_id, %(salt)s::bigint + 20) * 4)::integer),
    modified_date = %(stamp)s::timestamp
where e.enrollment_id in (
    select enrollment_id from public.enrollment
    where end_date is null and not no_show and service_type = 'P' and start_date < %(day)s::date
    order by demo.u(enrollment_id, %(salt)s::bigint + 21), enrollment_id
    limit %(count)s::integer
)
"""

# A note arrives or an unexcused absence is appealed: every row of a past student-day gets a new excuse.
CORRECTIONS = """
with picked as (
    select person_id, date
    from (select distinct person_id, date from public.attendance
          where date >= %(day)s::date - 21 and date < %(day)s::date) as student_days
    order by demo.u(person_id::bigint * 100000 + (date - date '2000-01-01'), %(salt)s::bigint + 30), person_id, date
    limit %(count)s::integer
),
changed as (
    select a.attendance_id, a.calendar_id, a.status, demo.u(a.attendance_id, %(salt)s::bigint + 31) as r,
        case
            when a.status = 'T' then case when coalesce(a.excuse, '') = 'U' then 'E' else coalesce(a.excuse, '') end
            when coalesce(a.excuse, '') = '' then
                case when demo.u(a.person_id::bigint * 100000 + (a.date - date '2000-01-01'),
                                 %(salt)s::bigint + 32) < 0.6
                     then 'E' else 'U' end
            when a.excuse = 'U' then 'E'
            when a.excuse = 'E' then 'U'
            else 'E'
        end as new_excuse
    from public.attendance as a
    join picked as p on p.person_id = a.person_id and p.date = a.date
)
update public.attendance as a
set excuse = c.new_excuse,
    excuse_id = (select xs.excuse_id from demo.excuse_slot as xs
                 where xs.calendar_id = c.calendar_id and xs.status = c.status and xs.excuse = c.new_excuse
                 order by xs.slot limit 1),
    present_minutes = case when a.status in ('T', 'E')
                           then greatest(0, coalesce(a.present_minutes, 30) - 3 - floor(c.r * 10)::integer)
                           else a.present_minutes end,
    comments = case c.new_excuse when 'E' then 'Excused: note received' else 'Changed to unexcused' end,
    modified_date = %(stamp)s::timestamp
from changed as c
where a.attendance_id = c.attendance_id
"""

# A teacher submits a forgotten period absence for a day up to two weeks back.
BACKDATED_ROWS = """
insert into public.attendance (attendance_id, person_id, calendar_id, period_id, date, status, excuse, excuse_id,
                               present_minutes, comments, modified_date)
with candidates as (
    select distinct e.person_id, e.calendar_id, d.date, d.period_schedule_id
    from public.enrollment as e
    join public.day as d
        on d.calendar_id = e.calendar_id and d.date >= e.start_date and d.date <= coalesce(e.end_date, d.date)
    where d.instruction and d.attendance and d.period_schedule_id is not null
      and not e.no_show and e.service_type = 'P'
      and d.date >= %(day)s::date - 14 and d.date < %(day)s::date
),
picked as (
    select c.*, demo.u(c.person_id::bigint * 100000 + (c.date - date '2000-01-01'), %(salt)s::bigint + 41) as r_period,
        case when demo.u(c.person_id::bigint * 100000 + (c.date - date '2000-01-01'), %(salt)s::bigint + 42) < 0.5
             then 'U' else '' end as excuse
    from candidates as c
    order by demo.u(c.person_id::bigint * 100000 + (c.date - date '2000-01-01'), %(salt)s::bigint + 40),
             c.person_id, c.date
    limit %(count)s::integer
)
select %(base_id)s::integer + row_number() over (order by p.person_id, p.date), p.person_id, p.calendar_id,
       pi.period_id, p.date, 'A', p.excuse, xs.excuse_id, null, 'Entered late by teacher', %(stamp)s::timestamp
from picked as p
join demo.schedule_info as si on si.period_schedule_id = p.period_schedule_id
join demo.period_info as pi
    on pi.period_schedule_id = p.period_schedule_id and pi.irank = 1 + floor(p.r_period * si.n_instr)::integer
left join demo.excuse_slot as xs
    on xs.calendar_id = p.calendar_id and xs.status = 'A' and xs.excuse = p.excuse and xs.slot = 0
"""

# Attendance taken in error (the student was on a field trip roster by mistake, the wrong student was marked):
# every row of the student-day goes, today's entries included.
DELETES = """
delete from public.attendance as a
using (
    select person_id, date
    from (select distinct person_id, date from public.attendance
          where date >= %(day)s::date - 14 and date <= %(day)s::date) as student_days
    order by demo.u(person_id::bigint * 100000 + (date - date '2000-01-01'), %(salt)s::bigint + 50), person_id, date
    limit %(count)s::integer
) as p
where a.person_id = p.person_id and a.date = p.date
"""

# The district changes what an absence code means; the code wins over the rows that use it, so every day
# those rows fall on aggregates differently from now on.
RECLASSIFY = """
update public.attendance_excuse as x
set excuse = case coalesce(x.excuse, '') when '' then 'U' when 'U' then 'E' when 'E' then 'U' else 'E' end,
    modified_date = %(stamp)s::timestamp
where x.excuse_id = (
    select excuse_id from public.attendance_excuse
    where active and status = 'A'
    order by demo.u(excuse_id, %(salt)s::bigint + 60), excuse_id
    limit 1
)
"""

CLOSE_DAY = """
update public.day as d
set instruction = false, attendance = false, period_schedule_id = null, comments = %(comment)s::text,
    modified_date = %(stamp)s::timestamp
where d.day_id = (
    select x.day_id from public.day as x
    join public.calendar as c on c.calendar_id = x.calendar_id
    where x.instruction and x.attendance and not c.exclude
      and x.date between %(low)s::date and %(high)s::date and x.date <> %(day)s::date
    order by demo.u(x.day_id, %(salt)s::bigint + 70), x.day_id
    limit 1
)
"""


@dataclass(frozen=True)
class SimulatedDay:
    date: dt.date
    activity: dict[str, dict[str, int]]  # district code -> activity -> rows touched


@dataclass(frozen=True)
class SimulationResult:
    start_today: dt.date
    today: dt.date
    days: tuple[SimulatedDay, ...]

    def describe(self) -> str:
        lines = [f"Simulated {len(self.days)} school day(s): clock moved from {self.start_today.isoformat()} "
                 f"to {self.today.isoformat()}."]
        for day in self.days:
            totals: dict[str, int] = {}
            for activity in day.activity.values():
                for name, rows in activity.items():
                    totals[name] = totals.get(name, 0) + rows
            lines.append(f"  {day.date.isoformat()} ({day.date:%a}): "
                         + ", ".join(f"{name.replace('_', ' ')} {rows:,}" for name, rows in totals.items()))
        return "\n".join(lines)


@dataclass(frozen=True)
class _DistrictState:
    district: District
    conn: psycopg.Connection
    index: int
    students: int
    max_grade: int
    end_year: int
    first_day: dt.date
    last_day: dt.date
    state_seed: int  # the generation seed: state ids stay unique whatever seed drives the simulation


def simulate_days(districts: list[District], days: int, seed: int | None = None) -> dt.date:
    """Advance the demo clock by `days` school days, applying each day's activity; returns the new today."""
    return run_simulation(districts, days, seed).today


def run_simulation(districts: list[District], days: int, seed: int | None = None) -> SimulationResult:
    if days < 0:
        raise DemoDataError(f"cannot simulate a negative number of days ({days})")
    if not districts:
        raise DemoDataError("no districts to simulate")
    read_clock(districts)  # fails early, with a clear message, when a district has no demo data
    states: list[_DistrictState] = []
    try:
        for district in districts:
            conn = database.connect(district_database(district))
            states.append(_district_state(district, conn))
        # Read again under the locks: a simulation that ran meanwhile has moved the clock.
        clock = read_clock(districts, {state.district.code: state.conn for state in states})
        seed = clock.seed if seed is None else seed
        today = clock.today
        simulated: list[SimulatedDay] = []
        for _ in range(days):
            day = _next_school_day(states, today)
            simulated.append(SimulatedDay(date=day, activity=_simulate_one_day(states, day, seed)))
            today = _next_school_day(states, day + dt.timedelta(days=1))
        for state in states:
            state.conn.execute("update demo.clock set today = %s, simulated_days = simulated_days + %s, "
                               "updated_at = now()", (today, days))
        for state in states:
            state.conn.commit()
        return SimulationResult(start_today=clock.today, today=today, days=tuple(simulated))
    finally:
        for state in states:
            state.conn.close()  # uncommitted work (after a failure) is rolled back


def _district_state(district: District, conn: psycopg.Connection) -> _DistrictState:
    row = conn.execute("select district_index, students_per_district, max_grade, end_year, seed, first_day, "
                       "last_day from demo.settings").fetchone()
    if row is None:
        raise DemoDataError(f"district {district.code}: demo settings are missing; regenerate the demo data")
    # Two simulations at once would interleave their ids; the second waits for the first.
    conn.execute("lock table demo.clock in exclusive mode")
    return _DistrictState(district=district, conn=conn, index=int(row[0]), students=int(row[1]),
                          max_grade=int(row[2]), end_year=int(row[3]), state_seed=int(row[4]),
                          first_day=row[5], last_day=row[6])


def _next_school_day(states: list[_DistrictState], on_or_after: dt.date) -> dt.date:
    """The first date on or after `on_or_after` with attendance in any calendar; past the end of the school
    year, simply the next weekday (the clock keeps moving through the summer)."""
    found: list[dt.date] = []
    for state in states:
        row = state.conn.execute("select min(date) from public.day where instruction and attendance "
                                 "and period_schedule_id is not null and date >= %s", (on_or_after,)).fetchone()
        if row and row[0] is not None:
            found.append(row[0])
    if found:
        return min(found)
    day = on_or_after
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def _simulate_one_day(states: list[_DistrictState], day: dt.date, seed: int) -> dict[str, dict[str, int]]:
    rng = random.Random(f"simulate:{seed}:{day.isoformat()}")
    # The statewide picture always has one reclassified code and one closed day per simulated day.
    reclassify_in = rng.randrange(len(states))
    close_in = rng.randrange(len(states))
    activity: dict[str, dict[str, int]] = {}
    for position, state in enumerate(states):
        reclassify = position == reclassify_in or rng.random() < RECLASSIFY_ODDS
        close = position == close_in or rng.random() < CLOSURE_ODDS
        activity[state.district.code] = _apply_day(state, day, seed, reclassify=reclassify, close=close)
    return activity


def _stamp(day: dt.date, hour: int, minute: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute))


def _rowcount(cursor: psycopg.Cursor[Any]) -> int:
    return max(cursor.rowcount, 0)


def _apply_day(state: _DistrictState, day: dt.date, seed: int, *, reclassify: bool, close: bool) -> dict[str, int]:
    rng = random.Random(f"simulate:{seed}:{state.index}:{day.isoformat()}")
    scale = state.students / 1000
    counts = {
        "new": 1 + int(scale * 1.0 + rng.random()),
        "withdraw": 1 + int(scale * 0.8 + rng.random()),
        "correct": 1 + int(scale * 4.0 + rng.random()),
        "backdate": 1 + int(scale * 1.5 + rng.random()),
        "delete": 1 + int(scale * 1.5 + rng.random()),
    }
    base = {"day": day, "salt": salt(seed, state.index, f"simulate:{day.isoformat()}"), "district": state.index}
    # Over the summer the office enrolls nobody into this year and closes no days; late corrections go on.
    in_session = state.first_day <= day <= state.last_day
    activity = {"new_students": 0, "withdrawals": 0}
    if in_session:
        activity.update(_roster_changes(state, day, seed, base, counts))
    activity.update(_attendance_changes(state, day, seed, base, counts))
    activity["reclassified_codes"] = 0
    if reclassify:
        activity["reclassified_codes"] = _rowcount(state.conn.execute(
            RECLASSIFY, {**base, "stamp": _stamp(day, 15, 10)}))
    activity["closed_days"] = 0
    if close and in_session:
        past = rng.random() < 0.5
        window = ((day - dt.timedelta(days=10), day - dt.timedelta(days=1)) if past
                  else (day + dt.timedelta(days=1), day + dt.timedelta(days=30)))
        comment = "Closed: weather (entered after the fact)" if past else "Closed: added staff development day"
        activity["closed_days"] = _rowcount(state.conn.execute(CLOSE_DAY, {
            **base, "low": window[0], "high": window[1], "comment": comment, "stamp": _stamp(day, 15, 45)}))
    return activity


def _roster_changes(state: _DistrictState, day: dt.date, seed: int, base: dict[str, object],
                    counts: dict[str, int]) -> dict[str, int]:
    conn = state.conn
    max_person = max_id(conn, "person", "person_id")
    conn.execute(NEW_STUDENTS, {**base, "count": counts["new"], "max_person": max_person,
                                "state_seed": state.state_seed, "max_grade": state.max_grade,
                                "end_year": state.end_year, "first_names": list(FIRST_NAMES),
                                "last_names": list(LAST_NAMES)})
    enrolled_at = _stamp(day, 9, 5)
    new_students = _rowcount(conn.execute(NEW_PERSONS, {**base, "max_person": max_person, "stamp": enrolled_at}))
    conn.execute(NEW_ENROLLMENTS, {**base, "max_person": max_person, "stamp": enrolled_at,
                                   "max_enrollment": max_id(conn, "enrollment", "enrollment_id")})
    conn.execute(demo_sql.PROFILES, {"salt": salt(seed, state.index, "profile")})
    withdrawals = _rowcount(conn.execute(WITHDRAWALS, {**base, "count": counts["withdraw"],
                                                       "stamp": _stamp(day, 10, 40)}))
    return {"new_students": new_students, "withdrawals": withdrawals}


def _attendance_changes(state: _DistrictState, day: dt.date, seed: int, base: dict[str, object],
                        counts: dict[str, int]) -> dict[str, int]:
    conn = state.conn
    taken = _rowcount(conn.execute(demo_sql.ATTENDANCE, {
        "from_date": day, "to_date": day + dt.timedelta(days=1), "stamp_before": day + dt.timedelta(days=1),
        # The generator's salt: the day gets the attendance a generation with a later today would give it.
        "salt": salt(seed, state.index, "attendance"), "late_share": 0.0,
        "base_id": max_id(conn, "attendance", "attendance_id"), "comments": list(ATTENDANCE_COMMENTS),
    }))
    corrected = _rowcount(conn.execute(CORRECTIONS, {**base, "count": counts["correct"],
                                                     "stamp": _stamp(day, 13, 15)}))
    backdated = _rowcount(conn.execute(BACKDATED_ROWS, {
        **base, "count": counts["backdate"], "stamp": _stamp(day, 14, 5),
        "base_id": max_id(conn, "attendance", "attendance_id")}))
    deleted = _rowcount(conn.execute(DELETES, {**base, "count": counts["delete"]}))
    return {"attendance_rows": taken, "corrected_rows": corrected, "backdated_rows": backdated,
            "deleted_rows": deleted}


def as_of_for(clock_today: dt.date) -> dt.date:
    """The as-of date of builds on demo data: the last day whose attendance has been taken."""
    return clock_today - dt.timedelta(days=1)
