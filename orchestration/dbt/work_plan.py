"""Which models a scheduled incremental run can leave out of its dbt invocation, because they have nothing
to do: the nightly (or hourly) job asks the warehouse first, then runs dbt on the rest only.

A state table built from a landing table has nothing to do for a district when no landing batch since the
one its last build incorporated (state.model_build) changed that landing table (landing.load_log): the
same decision its pre-hook would reach ("skip", macros/landing_horizon.sql), made here once for every
model in one query instead of in one dbt node per model. Left out of the invocation, such a model costs
nothing at all, and neither do its data tests: its rows and the rows of its parents are as they were
when they were last built and tested. (A change in a parent still runs the relationship tests of the
parent's selected children; the weekly resync builds and tests everything.)

att_day_aggregation has nothing to do when its table exists and every selected district's last
aggregation build has the run's as-of date and no landing batch after the horizon it recorded changed a
table the state tables copy (its own plan would find an empty window).

The left-out state tables are recorded as current up to the horizon the plan checked, as their own build
would have recorded them (record_unchanged): the aggregation takes the smallest horizon of its parents as
its own, so a parent left out without a record would hold back the batches its other parents bring.

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
    """The run's decision: the models left out (each with nothing to do), and each selected district's
    landing horizon (its newest committed batch) when the plan was made."""

    districts: tuple[str, ...]
    as_of_date: dt.date
    unchanged: tuple[str, ...]
    horizons: tuple[tuple[str, int], ...] = ()

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

# A landing batch of the district in (after, horizon] that may have changed the table: no load_log row
# saying it left the table unchanged.
_CHANGING_BATCH = """
exists (
    select from landing.load_batch as batch
    where batch.district_code = selected.district_code
        and batch.batch_id > {after}
        and batch.batch_id <= selected.horizon
        and not exists (
            select from landing.load_log as log
            where log.batch_id = batch.batch_id
                and log.table_name = models.model_name
                and log.rows_inserted + log.rows_updated + log.rows_deleted = 0
        )
)"""

# The landing-backed models that some selected district has work for (the pre-hook's full or delta).
_LANDING_MODELS_WITH_WORK = """
with selected as (
    select * from unnest(%(districts)s::text[], %(horizons)s::bigint[]) as selected (district_code, horizon)
),

models as (
    select unnest(%(models)s::text[]) as model_name
)

select models.model_name
from models
cross join selected
left join state.model_build as build
    on build.model_name = models.model_name and build.district_code = selected.district_code
where to_regclass('state.' || quote_ident(models.model_name)) is null
    or build.landing_batch_id is null
    or selected.horizon is null
    or build.landing_batch_id > selected.horizon
    or """ + _CHANGING_BATCH.format(after="build.landing_batch_id") + """
group by models.model_name
"""

# Whether the aggregation has nothing to do for every selected district: it was built as of the run's date,
# and no landing batch after the horizon it recorded changed any table the state tables copy (so none of
# the state tables it reads changed since; its own plan would find an empty window).
_AGGREGATION_IS_CURRENT = """
with selected as (
    select * from unnest(%(districts)s::text[], %(horizons)s::bigint[]) as selected (district_code, horizon)
),

models as (
    select unnest(%(models)s::text[]) as model_name
)

select to_regclass('state.att_day_aggregation') is not null and not exists (
    select from selected
    left join state.model_build as build
        on build.model_name = 'att_day_aggregation' and build.district_code = selected.district_code
    where build.landing_batch_id is null
        or build.as_of_date is distinct from %(as_of)s
        or selected.horizon is null
        or build.landing_batch_id > selected.horizon
        or exists (select from models where """ + _CHANGING_BATCH.format(after="build.landing_batch_id") + """)
)
"""

# The left-out state tables' records, as a build that found nothing to do writes them (record_model_build in
# macros/model_build.sql): the horizon the plan checked, the time, the origin, a new change sequence number;
# changed_at stays. The aggregation reads its parents' horizons from here.
_RECORD_UNCHANGED = """
update state.model_build as build
set landing_batch_id = selected.horizon,
    built_at = clock_timestamp(),
    origin = %(origin)s,
    build_seq = nextval('state.model_build_seq')
from unnest(%(districts)s::text[], %(horizons)s::bigint[]) as selected (district_code, horizon)
where build.district_code = selected.district_code
    and build.model_name = any(%(models)s::text[])
    and build.landing_batch_id <= selected.horizon
"""


def _bookkeeping_in_place(conn: psycopg.Connection) -> bool:
    """The tables the plan reads, with state.model_build's build_seq (a dbt run adds it to an older one)."""
    row = conn.execute("select bool_and(to_regclass(name) is not null) and exists (select from pg_attribute "
                       "where attrelid = to_regclass('state.model_build') and attname = 'build_seq') "
                       "from unnest(%s::text[]) as name", (list(_BOOKKEEPING),)).fetchone()
    return bool(row and row[0])


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
    if not _bookkeeping_in_place(conn):
        return WorkPlan((), as_of_date, ())
    codes = sorted(districts) if districts else _registry_districts(conn)
    if not codes:
        return WorkPlan((), as_of_date, ())
    newest = dict(conn.execute("select district_code, max(batch_id) from landing.load_batch "
                               "where district_code = any(%s) group by district_code", (codes,)).fetchall())
    params = {"districts": codes, "horizons": [newest.get(code) for code in codes], "models": list(LANDING_MODELS),
              "as_of": as_of_date}
    with_work = {row[0] for row in conn.execute(_LANDING_MODELS_WITH_WORK, params).fetchall()}
    unchanged = [model for model in models if model in LANDING_MODELS and model not in with_work]
    if AGGREGATION in models:
        current = conn.execute(_AGGREGATION_IS_CURRENT, params).fetchone()
        if current and current[0]:
            unchanged.append(AGGREGATION)
    horizons = tuple((code, newest[code]) for code in codes if newest.get(code) is not None)
    return WorkPlan(tuple(codes), as_of_date, tuple(sorted(unchanged)), horizons)


def record_unchanged(conn: psycopg.Connection, plan: WorkPlan, origin: str) -> None:
    """Record the left-out state tables as current up to the plan's horizons, as their own build would have:
    the aggregation takes the smallest horizon of its parents as its own, so a parent left out without this
    would hold the aggregation back from the batches its other parents bring. Commits."""
    models = [model for model in plan.unchanged if model in LANDING_MODELS]
    if not models or not plan.horizons:
        return
    conn.execute(_RECORD_UNCHANGED, {"districts": [code for code, _ in plan.horizons],
                                     "horizons": [horizon for _, horizon in plan.horizons],
                                     "models": models, "origin": origin})
    conn.commit()


def plan_and_record(conn: psycopg.Connection, models: Sequence[str], districts: Sequence[str] | None,
                    as_of_date: dt.date, origin: str) -> WorkPlan:
    """plan_incremental_run, then record_unchanged: what a planned run does before it starts dbt."""
    plan = plan_incremental_run(conn, models, districts, as_of_date)
    record_unchanged(conn, plan, origin)
    return plan
