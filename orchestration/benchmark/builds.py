"""dbt build timings at size, side by side: the model against a hand-written reference statement, a
two-district resync against the all-district build, an incremental run after one simulated day against
the full build. Ratios use the model execution times from dbt's run results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from orchestration import settings
from orchestration.dbt.runner import DbtRunResult, run_dbt
from orchestration.districts.registry import District
from orchestration.landing.load import load_districts
from orchestration.warehouse import database

# The targets of the build section (ratios of dbt model execution times measured in the same run).
FULL_TO_REFERENCE = 1.0
INCREMENTAL_TO_FULL = 0.05
TWO_DISTRICTS_TO_ALL = 0.12

AGGREGATION = "model.attendance_sync.att_day_aggregation"
REFERENCE_SQL = settings.PROJECT_ROOT / "benchmarks" / "reference_att_day_aggregation.sql"

Timed = Callable[[], AbstractContextManager[dict[str, float]]]


def model_seconds(result: DbtRunResult, only: str | None = None) -> float:
    """Sum of model execution times (tests excluded), or one model's."""
    result.raise_for_failure()
    return round(sum(n.execution_time for n in result.nodes
                     if n.unique_id.startswith("model.") and (only is None or n.unique_id == only)), 3)


def reference_seconds(as_of: dt.date, timed: Timed) -> tuple[dict[str, float], int]:
    statement = REFERENCE_SQL.read_text()
    with database.connect() as conn:
        conn.execute("drop table if exists public.bench_reference_aggregation")
        conn.execute("set enable_nestloop = off")
        conn.execute("set enable_mergejoin = off")
        with timed() as timing:
            conn.execute(f"create table public.bench_reference_aggregation as {statement}",  # type: ignore[arg-type]
                         {"as_of_date": as_of})
            conn.commit()
        count = conn.execute("select count(*) from public.bench_reference_aggregation").fetchone()
        differences = conn.execute(
            "select count(*) from ((select * from state.att_day_aggregation except "
            "select * from public.bench_reference_aggregation) union all (select * from "
            "public.bench_reference_aggregation except select * from state.att_day_aggregation)) d").fetchone()
        conn.execute("drop table public.bench_reference_aggregation")
        conn.commit()
    if differences and differences[0]:
        raise RuntimeError(f"the reference statement and the model differ in {differences[0]} rows")
    return timing, int(count[0]) if count else 0


def compare_builds(districts: list[District], section: Any, timed: Timed, as_of: dt.date,
                   simulate_one_day: Callable[[], dt.date]) -> Any:
    codes = [d.code for d in districts]
    rows: list[dict[str, Any]] = []

    def step(name: str, args: list[str], **options: Any) -> DbtRunResult:
        # One thread: each model's execution time is then its own cost. With two, models running side by
        # side on these two cores (dbt's Python and the server's work) lengthen each other's times, and the
        # sum counts that contention twice; small models, mostly dbt overhead, suffer the most.
        with timed() as timing:
            result = run_dbt([*args, "--threads", "1"], as_of_date=options.pop("as_of", as_of), **options)
        result.raise_for_failure()
        rows.append({"step": name, "models_s": model_seconds(result),
                     "att_day_aggregation_s": model_seconds(result, AGGREGATION), "end_to_end_s": timing["seconds"],
                     "peak_client_mb": timing["peak_client_mb"], "peak_server_mb": timing["peak_server_mb"]})
        return result

    step("first dbt build (every model, tests too)", ["build"])
    # Resyncs as the resync tool runs them (state tables replaced whole, state_replace): an incremental run
    # right after the first build would find nothing to do and time only dbt's overhead.
    full = step("resync: dbt run +att_day_aggregation, every district (state_replace)",
                ["run", "--select", "+att_day_aggregation"], state_replace=True)
    refresh = step("Attendance Aggregation Refresh (--full-refresh), every district",
                   ["run", "--select", "att_day_aggregation"], full_refresh=True)
    reference, reference_rows = reference_seconds(as_of, timed)
    rows.append({"step": f"hand-written reference statement ({reference_rows:,} rows)", "models_s": "",
                 "att_day_aggregation_s": reference["seconds"], "end_to_end_s": reference["seconds"],
                 "peak_client_mb": reference["peak_client_mb"], "peak_server_mb": reference["peak_server_mb"]})
    two = codes[:2]
    resync = step(f"resync: dbt run +att_day_aggregation, districts {', '.join(two)} (state_replace)",
                  ["run", "--select", "+att_day_aggregation"], districts=two, state_replace=True)
    two_refresh = step(f"Attendance Aggregation Refresh, districts {', '.join(two)}",
                       ["run", "--select", "att_day_aggregation"], districts=two, full_refresh=True)
    new_as_of = simulate_one_day()
    with timed() as load_timing:
        results = load_districts(districts)
    if not all(r.ok for r in results):
        raise RuntimeError(f"load after the simulated day failed: {[r.error for r in results if not r.ok]}")
    rows.append({"step": "landing load after one simulated day", "end_to_end_s": load_timing["seconds"],
                 "peak_client_mb": load_timing["peak_client_mb"], "peak_server_mb": load_timing["peak_server_mb"]})
    incremental = step(f"nightly: dbt run +att_day_aggregation after one simulated day (as of {new_as_of})",
                       ["run", "--select", "+att_day_aggregation"], as_of=new_as_of)
    section.rows.extend(rows)
    full_agg = model_seconds(refresh, AGGREGATION)
    section.target("full att_day_aggregation / reference statement", full_agg / reference["seconds"],
                   FULL_TO_REFERENCE)
    section.target("incremental att_day_aggregation after one day / full",
                   model_seconds(incremental, AGGREGATION) / full_agg, INCREMENTAL_TO_FULL)
    section.target(f"two-district resync / all-district build (of {len(codes)})",
                   model_seconds(resync) / model_seconds(full), TWO_DISTRICTS_TO_ALL)
    section.target("two-district Aggregation Refresh / all-district refresh",
                   model_seconds(two_refresh, AGGREGATION) / full_agg, 0.20)
    section.notes.append("ratios use dbt's model execution times (run_results.json), from runs with one dbt "
                         "thread so that models do not share the cores while timed; end-to-end times include "
                         "dbt start-up, parsing and tests where the step runs them")
    return section
