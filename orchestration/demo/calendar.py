"""School-year calendars and bell schedules for the demo districts.

Each demo district follows one district-wide calendar, as real districts do, varied per district by a
seeded generator: the first day, which optional holidays it observes, how long its breaks are, the
spring-break week. The walk counts 180 student days from the first day, so the last day falls where the
holidays push it (early June).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from enum import StrEnum

INSTRUCTIONAL_DAYS = 180
MONDAY, WEDNESDAY, THURSDAY, FRIDAY = 0, 2, 3, 4


class DayKind(StrEnum):
    INSTRUCTION = "instruction"
    EARLY_RELEASE = "early_release"
    WEEKEND = "weekend"
    HOLIDAY = "holiday"
    WORKDAY = "workday"  # staff only: teacher work days, professional development
    CONFERENCE = "conference"  # parent-teacher conferences: no school for elementary, regular day for secondary


@dataclass(frozen=True)
class CalendarDay:
    date: dt.date
    kind: DayKind
    comment: str | None


@dataclass(frozen=True)
class DistrictCalendar:
    end_year: int
    days: tuple[CalendarDay, ...]  # every date from the first staff day to the last, weekends included

    @property
    def start_date(self) -> dt.date:
        return self.days[0].date

    @property
    def end_date(self) -> dt.date:
        return self.days[-1].date

    @property
    def student_days(self) -> list[dt.date]:
        return [day.date for day in self.days
                if day.kind in (DayKind.INSTRUCTION, DayKind.EARLY_RELEASE, DayKind.CONFERENCE)]

    @property
    def first_day(self) -> dt.date:
        return self.student_days[0]

    @property
    def last_day(self) -> dt.date:
        return self.student_days[-1]


def school_year_end(today: dt.date) -> int:
    """The end year of the school year holding `today`: years run August to June, and July already
    belongs to the coming year (calendars are built over the summer)."""
    return today.year + 1 if today.month >= 7 else today.year


def nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """The n-th given weekday of a month (n = -1 for the last one)."""
    if n > 0:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    following = dt.date(year + (month == 12), month % 12 + 1, 1)
    last = following - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def _weekdays(first: dt.date, last: dt.date) -> list[dt.date]:
    count = (last - first).days + 1
    return [first + dt.timedelta(days=i) for i in range(count) if (first + dt.timedelta(days=i)).weekday() < 5]


def _next_weekday(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def _holidays(rng: random.Random, end_year: int) -> dict[dt.date, str]:
    year = end_year - 1
    closed: dict[dt.date, str] = {nth_weekday(year, 9, MONDAY, 1): "Labor Day"}
    if rng.random() < 0.5:
        closed[nth_weekday(year, 10, MONDAY, 2)] = "Indigenous Peoples' Day"
    veterans = dt.date(year, 11, 11)
    if veterans.weekday() < 5 and rng.random() < 0.6:
        closed[veterans] = "Veterans Day"
    thanksgiving = nth_weekday(year, 11, THURSDAY, 4)
    # Some districts close the whole week, most only Wednesday to Friday.
    break_start = thanksgiving - dt.timedelta(days=3 if rng.random() < 0.35 else 1)
    for day in _weekdays(break_start, thanksgiving + dt.timedelta(days=1)):
        closed[day] = "Thanksgiving Break"
    for day in _weekdays(dt.date(year, 12, rng.randint(19, 22)), dt.date(end_year, 1, rng.randint(2, 5))):
        closed[day] = "Winter Break"
    closed[nth_weekday(end_year, 1, MONDAY, 3)] = "Martin Luther King Jr. Day"
    closed[nth_weekday(end_year, 2, MONDAY, 3)] = "Presidents' Day"
    spring = nth_weekday(end_year, 3, MONDAY, rng.choice((2, 3, 4)))
    for day in _weekdays(spring, spring + dt.timedelta(days=4)):
        closed[day] = "Spring Break"
    closed[nth_weekday(end_year, 5, MONDAY, -1)] = "Memorial Day"
    closed[dt.date(end_year, 6, 19)] = "Juneteenth"
    return closed


def district_calendar(end_year: int, seed: int, district_index: int) -> DistrictCalendar:
    rng = random.Random(f"calendar:{seed}:{district_index}:{end_year}")
    year = end_year - 1
    first_day = _next_weekday(dt.date(year, 8, rng.randint(10, 20)))
    holidays = _holidays(rng, end_year)
    staff: dict[dt.date, str] = {}
    before = first_day
    for _ in range(3):
        before = before - dt.timedelta(days=1)
        while before.weekday() >= 5:
            before -= dt.timedelta(days=1)
        staff[before] = "Teacher work day"
    staff[nth_weekday(year, 10, FRIDAY, rng.choice((2, 3)))] = "Professional development (no school)"
    if rng.random() < 0.5:
        first_back = min(day for day, name in holidays.items() if name == "Winter Break" and day.year == end_year)
        staff[_next_weekday(first_back + dt.timedelta(days=1))] = "Professional development (no school)"
    conference_thursday = nth_weekday(year, 10, THURSDAY, rng.choice((3, 4)))
    conferences = {conference_thursday, conference_thursday + dt.timedelta(days=1)}

    # Walk forward until 180 student days are counted; conference days count (secondary schools hold class).
    student_days: list[dt.date] = []
    day = first_day
    while len(student_days) < INSTRUCTIONAL_DAYS:
        if day.weekday() < 5 and day not in holidays and day not in staff:
            student_days.append(day)
        day += dt.timedelta(days=1)
    last_day = student_days[-1]
    checkout = _next_weekday(last_day + dt.timedelta(days=1))
    staff[checkout] = "Teacher check-out"

    early = {last_day}
    school = set(student_days)
    for name in ("Thanksgiving Break", "Winter Break", "Spring Break"):
        start = min(d for d, label in holidays.items() if label == name)
        eve = max((d for d in school if d < start), default=None)
        if eve is not None:
            early.add(eve)
    for month, calendar_year in ((10, year), (2, end_year)):
        wednesday = nth_weekday(calendar_year, month, WEDNESDAY, 1)
        if wednesday in school:
            early.add(wednesday)

    days: list[CalendarDay] = []
    current = min(staff)
    while current <= checkout:
        if current in staff:
            days.append(CalendarDay(current, DayKind.WORKDAY, staff[current]))
        elif current.weekday() >= 5:
            days.append(CalendarDay(current, DayKind.WEEKEND, None))
        elif current in holidays:
            days.append(CalendarDay(current, DayKind.HOLIDAY, holidays[current]))
        elif current in conferences and current in school:
            days.append(CalendarDay(current, DayKind.CONFERENCE, "Parent-teacher conferences"))
        elif current in early:
            days.append(CalendarDay(current, DayKind.EARLY_RELEASE, "Early release"))
        elif current in school:
            days.append(CalendarDay(current, DayKind.INSTRUCTION, None))
        else:
            # After the 180th day, before check-out: summer has started.
            days.append(CalendarDay(current, DayKind.HOLIDAY, "Summer"))
        current += dt.timedelta(days=1)
    return DistrictCalendar(end_year=end_year, days=tuple(days))


@dataclass(frozen=True)
class Period:
    name: str
    start: dt.time
    end: dt.time
    non_instructional: bool = False

    @property
    def minutes(self) -> int:
        return (self.end.hour * 60 + self.end.minute) - (self.start.hour * 60 + self.start.minute)


def _clock(minutes: int) -> dt.time:
    return dt.time(minutes // 60, minutes % 60)


def elementary_schedule(early_release: bool, preschool: bool = False) -> list[Period]:
    """Elementary (and preschool) attendance is taken twice a day: morning and afternoon."""
    if preschool:
        return [Period("AM", dt.time(8, 30), dt.time(11, 0)), Period("PM", dt.time(12, 0), dt.time(12, 45)
                                                                         if early_release else dt.time(14, 30))]
    if early_release:
        return [Period("AM", dt.time(8, 10), dt.time(11, 10)), Period("PM", dt.time(11, 40), dt.time(12, 40))]
    return [Period("AM", dt.time(8, 10), dt.time(11, 40)), Period("PM", dt.time(12, 20), dt.time(14, 50))]


# Class length by number of periods, on a regular day and on an early-release day.
_SECONDARY_MINUTES = {6: (58, 36), 7: (50, 31), 8: (44, 27)}


def secondary_schedule(periods: int, early_release: bool) -> list[Period]:
    """6-8 class periods with a non-instructional lunch in the middle; early release shortens every
    class and drops lunch (students leave at midday)."""
    regular, short = _SECONDARY_MINUTES[periods]
    length = short if early_release else regular
    result: list[Period] = []
    clock = 7 * 60 + 50
    for number in range(1, periods + 1):
        result.append(Period(f"Period {number}", _clock(clock), _clock(clock + length)))
        clock += length + 5
        if number == (periods + 1) // 2 and not early_release:
            result.append(Period("Lunch", _clock(clock), _clock(clock + 30), non_instructional=True))
            clock += 35
    return result
