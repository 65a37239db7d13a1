"""End-to-end syncs at size, the way the jobs run them: a first sync, an identical reload, the weekly resync
(`weekly_state_resync`: reload every district, build every model with its tests) and the nightly run after
one simulated day (`nightly_attendance`: reload every district, build the aggregation, the models it reads
and the reports), each timed with its peak memory and disk. Between steps the dead rows that loads and
builds leave behind are vacuumed (untimed), so that the run needs less free disk.

Two ratios have targets: the nightly end to end against the weekly resync end to end, and a dbt run of the
state tables with nothing changed against their full build, both measured in this run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from orchestration.dbt.runner import JOB_EXCLUDES, DbtRunResult, run_dbt
from orchestration.dbt.work_plan import AGGREGATION, LANDING_MODELS, plan_and_record
from orchestration.districts.registry import District
from orchestration.landing.load import load_districts
from orchestration.warehouse import database
from orchestration.warehouse.run_origin import cli_origin

Timed = Callable[[], AbstractContextManager[dict[str, float]]]

STATE_MODELS = "path:models/state"
NIGHTLY_MODELS = "+att_day_aggregation+"
NIGHTLY_TARGET = 0.10
NOTHING_CHANGED_TARGET = 0.05


def load_all(districts: list[District]) -> None:
    results = load_districts(districts)
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"benchmark load failed: {failed[0]}")


def state_model_seconds(result: DbtRunResult, state_models: set[str]) -> float:
    """Execution time of the state tables (models/state) in a run, tests excluded."""
    result.raise_for_failure()
    return round(sum(n.execution_time for n in result.nodes if n.unique_id in state_models), 3)


def data_test_seconds(result: DbtRunResult) -> float:
    return round(sum(n.execution_time for n in result.nodes if n.unique_id.startswith("test.")), 3)


def slowest_tests(result: DbtRunResult, count: int = 3) -> str:
    tests = sorted((n for n in result.nodes if n.unique_id.startswith("test.")), key=lambda n: -n.execution_time)
    return ", ".join(f"{n.unique_id.split('.')[2]} {n.execution_time:.1f} s" for n in tests[:count])


def vacuum_between_steps() -> None:
    """Make the space of replaced landing and state rows reusable before the next step writes again."""
    with database.connect(autocommit=True) as conn:
        conn.execute("vacuum (analyze false)")


def compare_syncs(districts: list[District], section: Any, timed: Timed, as_of: dt.date,
                  simulate_one_day: Callable[[], dt.date], absolute_targets: dict[str, float] | None = None) -> Any:
    """`absolute_targets`: step name -> limit in seconds, for the sizes whose end-to-end times have targets."""
    rows: list[dict[str, Any]] = []
    ends: dict[str, float] = {}

    def step(name: str, load: bool, dbt_args: list[str] | None, planned: bool = False,
             **options: Any) -> DbtRunResult | None:
        """`planned`: as the nightly job runs dbt, leaving out the models with nothing to do (timed too)."""
        result = None
        with timed() as timing:
            if load:
                with timed() as load_timing:
                    load_all(districts)
            if dbt_args is not None:
                if planned:
                    with database.connect() as conn:
                        plan = plan_and_record(conn, [*LANDING_MODELS, AGGREGATION], None, options["as_of_date"],
                                               cli_origin("benchmark"))
                    dbt_args = [*dbt_args, *plan.exclude_args()]
                    section.notes.append(f"{name}: {plan.summary()}")
                result = run_dbt(dbt_args, **options)
        if result is not None:
            result.raise_for_failure()
        ends[name] = timing["seconds"]
        rows.append({"step": name, "load_s": load_timing["seconds"] if load else "",
                     "dbt_s": round(timing["seconds"] - (load_timing["seconds"] if load else 0), 3)
                     if result is not None else "",
                     "tests_s": data_test_seconds(result) if result is not None else "", **timing})
        vacuum_between_steps()
        return result

    first = step("first sync (load every district, dbt build every model with tests)", True, ["build", *JOB_EXCLUDES],
                 as_of_date=as_of)
    assert first is not None
    step("identical reload (every district, nothing changed)", True, None)
    nothing = step("dbt run of the state tables, nothing changed", False, ["run", "--select", STATE_MODELS],
                   planned=True, as_of_date=as_of)
    weekly = step("weekly resync end to end (weekly_state_resync: load every district, dbt build with tests)",
                  True, ["build", *JOB_EXCLUDES], as_of_date=as_of, state_replace=True)
    assert nothing is not None and weekly is not None
    # The state tables (models/state), whether or not the planned run left them out.
    state_models = {f"model.attendance_sync.{name}" for name in ("district", *LANDING_MODELS, AGGREGATION)}
    new_as_of = simulate_one_day()
    step(f"nightly end to end after one simulated day (nightly_attendance, as of {new_as_of})", True,
         ["build", "--select", NIGHTLY_MODELS, *JOB_EXCLUDES], planned=True, as_of_date=new_as_of)
    section.rows.extend(rows)
    nightly_s = ends[rows[-1]["step"]]
    weekly_s = ends[rows[-2]["step"]]
    section.target("nightly end to end after one simulated day / weekly resync end to end (same run)",
                   nightly_s / weekly_s, NIGHTLY_TARGET)
    full_state = state_model_seconds(weekly, state_models)
    section.target("dbt run of the state tables with nothing changed / full state build",
                   state_model_seconds(nothing, state_models) / full_state if full_state else 0.0,
                   NOTHING_CHANGED_TARGET)
    for name, limit in (absolute_targets or {}).items():
        seconds = ends[rows[-1]["step"]] if name == "nightly" else weekly_s
        section.target(f"{name} end to end (minutes)", seconds / 60, limit / 60, unit=" min")
    tests = [n for n in weekly.nodes if n.unique_id.startswith("test.")]
    section.notes.append(f"the weekly resync's {len(tests)} data tests took {data_test_seconds(weekly)} s of "
                         f"{ends[rows[-2]['step']]} s; the slowest: {slowest_tests(weekly)}")
    section.notes.append(
        "each step as the jobs run it (plain loader + dbt, no Dagster); the full state build is the state "
        "tables' model time in the weekly resync's build, the nothing-changed run is `dbt run --select "
        f"{STATE_MODELS}` right after an identical reload, planned as the nightly job plans its run (the models "
        "with nothing new left out, orchestration/dbt/work_plan.py); a plain VACUUM (untimed) follows every step")
    return section
