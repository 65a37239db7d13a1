"""The reports' headline figures (chronic absence rate, ADA, ADM), statewide and per district.

They are what an analyst looks at first, so the Dagster UI shows them as numeric metadata of each report
materialization (and plots them over materializations). Figures are for the latest school year in the
reports. Needs no Dagster: plain numbers keyed by label.

Definitions (docs/domain.md, "State reports"):
- chronic absence rate: chronically absent students / students with at least 10 enrolled days, in percent;
  per district from reports.student_attendance (a student counts once per district), statewide from
  reports.statewide_student_attendance (once per statewide id, whichever districts they attended);
- ADA and ADM: the sums of the schools' ADA and ADM in reports.school_attendance (students per day).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

STATEWIDE = "statewide"


@dataclass(frozen=True)
class Headline:
    """One scope's figures (a district code, or STATEWIDE); None where the reports hold no basis for one."""

    scope: str
    end_year: int
    chronic_absence_rate: float | None
    ada: float | None
    adm: float | None


_DISTRICT_CHRONIC = """
with students as (
    select district_code, person_id,
           sum(enrolled_days) as enrolled_days, sum(absent_days) as absent_days
    from reports.student_attendance
    where end_year = %(end_year)s
    group by district_code, person_id
)
select district_code,
       100.0 * count(*) filter (where enrolled_days >= 10 and absent_days >= 0.10 * enrolled_days)
       / nullif(count(*) filter (where enrolled_days >= 10), 0)
from students
group by district_code
"""
_STATEWIDE_CHRONIC = """
select 100.0 * count(*) filter (where chronically_absent) / nullif(count(*) filter (where enrolled_days >= 10), 0)
from reports.statewide_student_attendance
where end_year = %(end_year)s
"""
_SCHOOL_SUMS = """
select district_code, sum(ada), sum(adm)
from reports.school_attendance
where end_year = %(end_year)s
group by district_code
"""


def _rounded(value: object, places: int) -> float | None:
    return None if value is None else round(float(value), places)  # type: ignore[arg-type]


def report_headlines(conn: psycopg.Connection) -> list[Headline]:
    """Statewide first, then each district in code order; empty when the reports are not built yet."""
    built = conn.execute("select to_regclass('reports.student_attendance') is not null and "
                         "to_regclass('reports.school_attendance') is not null and "
                         "to_regclass('reports.statewide_student_attendance') is not null").fetchone()
    if not built or not built[0]:
        return []
    row = conn.execute("select max(end_year) from reports.student_attendance").fetchone()
    if row is None or row[0] is None:
        return []
    params = {"end_year": int(row[0])}
    chronic = {str(code): rate for code, rate in conn.execute(_DISTRICT_CHRONIC, params).fetchall()}
    sums = {str(code): (ada, adm) for code, ada, adm in conn.execute(_SCHOOL_SUMS, params).fetchall()}
    statewide_row = conn.execute(_STATEWIDE_CHRONIC, params).fetchone()
    statewide_rate = statewide_row[0] if statewide_row else None
    headlines = [Headline(STATEWIDE, params["end_year"], _rounded(statewide_rate, 1),
                          _rounded(sum(float(a) for a, _ in sums.values() if a is not None), 1) if sums else None,
                          _rounded(sum(float(m) for _, m in sums.values() if m is not None), 1) if sums else None)]
    for code in sorted(set(chronic) | set(sums)):
        ada, adm = sums.get(code, (None, None))
        headlines.append(Headline(code, params["end_year"], _rounded(chronic.get(code), 1), _rounded(ada, 1),
                                  _rounded(adm, 1)))
    return headlines


def report_headline_metadata(conn: psycopg.Connection) -> dict[str, float | int]:
    """The headlines as flat labelled numbers, e.g. "chronic absence % (statewide)": 16.9, "ADA (D01)": 1234.5
    and "school year": 2026; Dagster takes them as numeric metadata as they are. Figures without a basis are
    left out."""
    values: dict[str, float | int] = {}
    for headline in report_headlines(conn):
        values["school year"] = headline.end_year
        for label, value in (("chronic absence %", headline.chronic_absence_rate), ("ADA", headline.ada),
                             ("ADM", headline.adm)):
            if value is not None:
                values[f"{label} ({headline.scope})"] = value
    return values
