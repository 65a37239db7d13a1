"""Which models a scheduled incremental run can leave out of its dbt invocation, because they have nothing
to do: the nightly (or hourly) job asks the warehouse first, then runs dbt on the rest only.

A state table built from a landing table has nothing to do for a district when no landing batch since the
one its last build incorporated (state.model_build) changed that landing table (landing.load_log): the
same decision its pre-hook would reach ("skip", macros/landing_horizon.sql), made here once for every
model in one query instead of in one dbt node per model. Left out of the invocation, such a model costs
nothing at all, and neither do its data tests: its rows and the rows of its parents are as they were
when they were last built and tested. (A change in a parent still runs the relationship tests of the
parent's selected children; the weekly resync builds and tests everything.)

att_day_aggregation has nothing to do when no state table has (whether the run selects it or not), its
table exists, and every selected district's last aggregation build has the run's as-of date and came after
the last build of every state table of the district.

A model is kept whenever in doubt: a district never built or never loaded, a landing horizon that went
back (a reset), a missing table, a warehouse without its bookkeeping tables yet. Runs that replace state
(the weekly resync, --full-refresh, the resync tool) and analysts' own materializations do not use this:
they build what they select.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from orchestration.districts.contract import TABLES

AGGREGATION = "att_day_aggregation"
# State tables that copy a landing table of the same name (district reads the registry: always built).
LANDING_MODELS = tuple(spec.name for spec in TABLES)


@dataclass(frozen=True)
class WorkPlan:
    """The run's decision: models with work, and the ones left out (each with nothing to do)."""

    districts: tuple[str, ...]
    as_of_date: dt.date
    unchanged: tuple[str, ...]

    def exclude_args(self) -> list[str]:
        # One value (dbt splits it on spaces): dagster-dbt takes a runtime --exclude with one value.
        return ["--exclude", " ".join(self.unchanged)] if self.unchanged else []

    def summary(self) -> str:
        if not self.unchanged:
            return "every model has work (nothing left out)"
        return (f"left out, nothing new for {', '.join(self.districts) or 'any district'} since their last build "
                f"(as of {self.as_of_date}): {', '.join(self.unchanged)}")


def default_as_of_date(time_zone: str) -> dt.date:
    """The as-of date dbt uses when none is given (macros/as_of_date.sql): yesterday in the state's zone."""
    return dt.datetime.now(zoneinfo.ZoneInfo(time_zone)).date() - dt.timedelta(days=1)


_BOOKKEEPING = ("state.model_build", "landing.load_batch", "landing.load_log", "landing.district")

# Per landing-backed model: whether some selected district has work (the pre-hook's full or delta).
_LANDING_MODELS_WITH_WORK = """
with selected as (
    select unnest(%(districts)s::text[]) as district_code
),

models as (
    select unnest(%(models)s::text[]) as model_name
),

horizon as (
    select district_code, max(batch_id) as batch_id
    from landing.load_batch
    group by district_code
)

select models.model_name
from models
cross join selected
left join state.model_build as build
    on build.model_name = models.model_name and build.district_code = selected.district_code
left join horizon on horizon.district_code = selected.district_code
where to_regclass('state.' || quote_ident(models.model_name)) is null
    or build.landing_batch_id is null
    or horizon.batch_id is null
    or build.landing_batch_id > horizon.batch_id
    or exists (
        select from landing.load_batch as batch
        where batch.district_code = selected.district_code
            and batch.batch_id > build.landing_batch_id
            and not exists (
                select from landing.load_log as log
                where log.batch_id = batch.batch_id
                    and log.table_name = models.model_name
                    and log.rows_inserted + log.rows_updated + log.rows_deleted = 0
            )
    )
group by models.model_name
"""

# The aggregation's last build, per selected district, came after the last build of every landing-backed
# state table (build_seq orders builds) and has the run's as-of date.
_AGGREGATION_IS_CURRENT = """
select to_regclass('state.att_day_aggregation') is not null
    and count(build.district_code) = cardinality(%(districts)s::text[])
    and bool_and(coalesce(
        build.as_of_date = %(as_of)s
        and build.build_seq > (
            select coalesce(max(coalesce(parent.build_seq, 0)), 0)
            from state.model_build as parent
            where parent.district_code = build.district_code and parent.model_name = any(%(models)s::text[])
        ), false))
from unnest(%(districts)s::text[]) as selected (district_code)
left join state.model_build as build
    on build.model_name = 'att_day_aggregation' and build.district_code = selected.district_code
"""


def _registry_districts(conn: psycopg.Connection) -> list[str]:
    """Every current district of the registry, as dbt selects them when no districts var is given."""
    rows = conn.execute("select district_code from landing.district as d "
                        "where coalesce((to_jsonb(d) ->> 'in_registry')::boolean, true) "
                        "order by district_code").fetchall()
    return [row[0] for row in rows]


def plan_incremental_run(conn: psycopg.Connection, models: Sequence[str], districts: Sequence[str] | None,
                         as_of_date: dt.date) -> WorkPlan:
    """The models among `models` that an incremental run for `districts` (None or empty: every district of
    the registry) as of `as_of_date` can leave out."""
    if any(conn.execute("select to_regclass(%s) is null", (name,)).fetchone() == (True,) for name in _BOOKKEEPING):
        return WorkPlan((), as_of_date, ())
    codes = sorted(districts) if districts else _registry_districts(conn)
    if not codes:
        return WorkPlan((), as_of_date, ())
    with_work = {row[0] for row in conn.execute(
        _LANDING_MODELS_WITH_WORK, {"districts": codes, "models": list(LANDING_MODELS)}).fetchall()}
    unchanged = [model for model in models if model in LANDING_MODELS and model not in with_work]
    if AGGREGATION in models and not with_work:
        current = conn.execute(_AGGREGATION_IS_CURRENT, {"districts": codes, "as_of": as_of_date,
                                                           "models": list(LANDING_MODELS)}).fetchone()
        if current and current[0]:
            unchanged.append(AGGREGATION)
    return WorkPlan(tuple(codes), as_of_date, tuple(sorted(unchanged)))
