"""The nightly job's work plan (orchestration/dbt/work_plan.py) on a real warehouse: which models a run can
leave out of its dbt invocation because nothing reached them since their last build, and that it keeps
a model whenever it cannot be sure. Two districts from the sample district database, loaded through the
real loader (whose load_log says which tables a batch changed).

The nightly job itself leaving models out: tests/dagster/test_dagster_jobs.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from orchestration.dbt.work_plan import AGGREGATION, LANDING_MODELS, plan_incremental_run, record_unchanged
from orchestration.districts.registry import District, DistrictSource
from orchestration.warehouse import database
from tests.support.districts import create_district_database
from tests.support.warehouse import Warehouse, district_conn, new_warehouse, unique_name

CODES = ("D01", "D02")
AS_OF = dt.date(2026, 9, 2)
EVERY_MODEL = [*LANDING_MODELS, AGGREGATION]


@pytest.fixture(scope="module")
def warehouse() -> Iterator[Warehouse]:
    sources: dict[str, District] = {}
    try:
        with new_warehouse("test_work_plan", districts=sources) as warehouse:
            for code in CODES:
                name = unique_name(f"district_{code.lower()}")
                sources[code] = District(code, f"District {code}", DistrictSource("database", database=name))
                create_district_database(name)
            warehouse.load(*CODES)
            warehouse.build_all(AS_OF)
            yield warehouse
    finally:
        for district in sources.values():
            database.drop_database(str(district.source.database))


def left_out(districts: list[str] | None = None, as_of: dt.date = AS_OF) -> set[str]:
    with database.connect() as conn:
        return set(plan_incremental_run(conn, EVERY_MODEL, districts, as_of).unchanged)


def test_after_a_build_with_nothing_new_every_model_is_left_out(warehouse: Warehouse) -> None:
    assert left_out() == set(EVERY_MODEL)
    warehouse.load(*CODES)  # an identical reload: batches, but no table changed
    assert left_out() == set(EVERY_MODEL)


def test_a_new_as_of_date_keeps_the_aggregation(warehouse: Warehouse) -> None:
    assert left_out(as_of=AS_OF + dt.timedelta(days=1)) == set(LANDING_MODELS)


def test_a_changed_table_is_kept_for_the_districts_it_changed_in(warehouse: Warehouse) -> None:
    with district_conn(warehouse.districts["D01"]) as conn:
        conn.execute("update person set last_name = last_name || '-x' where person_id = 1")
    warehouse.load(*CODES)
    try:
        assert left_out() == set(LANDING_MODELS) - {"person"}  # the aggregation reads the state tables
        assert left_out(["D01"]) == set(LANDING_MODELS) - {"person"}
        assert left_out(["D02"]) == set(EVERY_MODEL)
    finally:
        warehouse.build_all(AS_OF)
    assert left_out() == set(EVERY_MODEL)


def test_a_change_a_parent_took_without_the_aggregation_keeps_the_aggregation(warehouse: Warehouse) -> None:
    """A state table rebuilt on its own (say by an analyst) after a load changed it: the table is current,
    the aggregation is not (the change is after the horizon it recorded)."""
    with district_conn(warehouse.districts["D02"]) as conn:
        conn.execute("update enrollment set grade = grade || 'x'")
    warehouse.load(*CODES)
    warehouse.dbt("run", "--select", "enrollment", as_of=AS_OF)
    assert left_out() == set(LANDING_MODELS)
    warehouse.build_all(AS_OF)
    assert left_out() == set(EVERY_MODEL)


def test_a_planned_run_equals_a_full_recompute(warehouse: Warehouse) -> None:
    """Only attendance changed: the plan leaves out every other state table and records it as current up to
    the new batch, so the aggregation (which takes its parents' smallest horizon) takes the change."""
    with district_conn(warehouse.districts["D01"]) as conn:
        conn.execute("update attendance set status = 'T', present_minutes = 45 where attendance_id = 501")
    warehouse.load(*CODES)
    warehouse.snapshot("before_plan")
    with database.connect() as conn:
        plan = plan_incremental_run(conn, EVERY_MODEL, None, AS_OF)
        assert set(plan.unchanged) == set(LANDING_MODELS) - {"attendance"}
        record_unchanged(conn, plan, "test")
    warehouse.dbt("run", "--select", "state", *plan.exclude_args(), as_of=AS_OF)
    assert warehouse.differences(AS_OF) == (0, 0)
    assert warehouse.differs_from_snapshot("before_plan", "district_code = 'D01'") != (0, 0)
    assert left_out() == set(EVERY_MODEL)


def test_whenever_in_doubt_the_model_is_kept(warehouse: Warehouse) -> None:
    conn = warehouse.conn
    conn.execute("alter table state.school_year rename to school_year_away")
    conn.commit()
    try:
        assert "school_year" not in left_out(), "a missing table is built"
    finally:
        conn.execute("alter table state.school_year_away rename to school_year")
        conn.commit()
    warehouse.register("D03")  # registered, never loaded nor built
    try:
        assert left_out() == set(), "a district without a build record keeps every model"
        assert left_out(["D02"]) == set(EVERY_MODEL)
    finally:
        conn.execute("delete from landing.district where district_code = 'D03'")
        conn.commit()
