"""att_day_aggregation on a real PostgreSQL with the real dbt project: its unit tests (every aggregation
rule, hand-computed rows, in models/state/att_day_aggregation.yml), the reference statement of the
benchmark against the model, the data tests, the partitioned layout and what a run records, the
Attendance Aggregation Refresh of selected districts, and atomicity of a failing run.

Incremental runs against full recomputes: tests/dbt/test_incremental_equals_full.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest

from orchestration.dbt import runner as dbt_runner
from tests.support.districts import load, school_days, small_district
from tests.support.warehouse import REFERENCE_SQL, Warehouse, new_warehouse

CODES = ("D01", "D02", "D03")
AS_OF = school_days()[9]


@pytest.fixture(scope="module")
def warehouse() -> Iterator[Warehouse]:
    """Three small districts loaded and every state model built (the aggregation from scratch)."""
    with new_warehouse("test_att_day_model") as warehouse:
        warehouse.register(*CODES)
        for number, code in enumerate(CODES):
            load(warehouse.conn, small_district(code, seed=100 + number, students=12))
        warehouse.build_all(AS_OF)
        yield warehouse


def checksum(conn: psycopg.Connection, code: str) -> str:
    row = conn.execute("select count(*) || ':' || md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
                       "from state.att_day_aggregation t where district_code = %s", (code,)).fetchone()
    conn.commit()
    assert row is not None
    return str(row[0])


def partitions(conn: psycopg.Connection) -> dict[str, int]:
    """Partition name -> oid."""
    rows = conn.execute("select c.relname, c.oid::integer from pg_inherits i join pg_class c on c.oid = i.inhrelid "
                        "where i.inhparent = 'state.att_day_aggregation'::regclass").fetchall()
    conn.commit()
    return dict(rows)


def test_unit_tests_cover_every_rule(warehouse: Warehouse) -> None:
    result = warehouse.dbt("test", "--select", "att_day_aggregation,test_type:unit", as_of=AS_OF)
    passed = {node.unique_id.rsplit(".", 1)[-1] for node in result.nodes if node.status == "pass"}
    assert passed >= {
        "att_day_aggregation_missed_minutes_by_status", "att_day_aggregation_excuse_codes",
        "att_day_aggregation_duplicate_rows", "att_day_aggregation_cap_and_split",
        "att_day_aggregation_day_thresholds", "att_day_aggregation_counted_days_and_periods",
        "att_day_aggregation_enrollments"}, [node.unique_id for node in result.nodes]


def test_reference_statement_equals_the_model(warehouse: Warehouse) -> None:
    assert warehouse.differences(AS_OF) == (0, 0)
    # The data exercises the rules, not only present days.
    figures = warehouse.conn.execute(
        "select count(*), count(distinct district_code), count(*) filter (where absent_days = 1.0), "
        "count(*) filter (where absent_days = 0.5), count(excuse_id), sum(tardy_count), "
        "count(*) filter (where unknown_absent_minutes > 0), count(*) filter (where excused_absent_minutes > 0) "
        "from state.att_day_aggregation").fetchone()
    warehouse.conn.commit()
    assert figures is not None
    rows, districts, whole, half, excuses, tardies, unknown, excused = figures
    assert rows > 200 and districts == 3
    assert min(whole, half, excuses, tardies, unknown, excused) > 0, figures
    # Nothing past the as-of date, every row on an instructional attendance day with minutes.
    assert warehouse.conn.execute(
        "select count(*) from state.att_day_aggregation a left join state.day d using (district_code, calendar_id, "
        "date) where a.date > %s or not d.instruction or not d.attendance or a.scheduled_minutes <= 0",
        (AS_OF,)).fetchone() == (0,)
    warehouse.conn.commit()


def test_data_tests_pass(warehouse: Warehouse) -> None:
    result = warehouse.dbt("test", "--select", "att_day_aggregation,test_type:data", as_of=AS_OF)
    tests = {node.unique_id: node.status for node in result.nodes if node.unique_id.startswith("test.")}
    assert len(tests) >= 2  # the relationships; NULLs are refused by the table's NOT NULL constraints
    assert set(tests.values()) == {"pass"}, tests


def test_the_table_and_each_partition_refuse_nulls(warehouse: Warehouse) -> None:
    """The declared not_null columns are NOT NULL on the partitioned table and on every partition (a
    partition is set NOT NULL before it is attached)."""
    not_null = dict(warehouse.conn.execute(
        "select c.relname, count(*) from pg_attribute a join pg_class c on c.oid = a.attrelid "
        "where (c.oid = 'state.att_day_aggregation'::regclass or c.oid in (select inhrelid from pg_inherits "
        "where inhparent = 'state.att_day_aggregation'::regclass)) and a.attnum > 0 and a.attnotnull "
        "group by c.relname").fetchall())
    warehouse.conn.commit()
    assert set(not_null) == {"att_day_aggregation", *partitions(warehouse.conn)}
    assert set(not_null.values()) == {14}, not_null
    with pytest.raises(psycopg.errors.NotNullViolation, match="present_minutes"):
        warehouse.conn.execute("update state.att_day_aggregation set present_minutes = null")
    warehouse.conn.rollback()


def test_table_is_partitioned_by_district_and_records_its_horizon(warehouse: Warehouse) -> None:
    conn = warehouse.conn
    assert set(partitions(conn)) == {f"att_day_aggregation__{code.lower()}" for code in CODES}
    indexes = conn.execute(
        "select tablename, indexdef from pg_indexes where schemaname = 'state' "
        "and tablename like 'att_day_aggregation__%%'").fetchall()
    conn.commit()
    assert len(indexes) == len(CODES)
    assert all("UNIQUE" in definition and "(calendar_id, person_id, date)" in definition for _, definition in indexes)
    horizons = dict(conn.execute(
        "select district_code, min(landing_batch_id) from state.model_build "
        "where model_name in ('calendar', 'day', 'period', 'period_schedule', 'enrollment', 'attendance_excuse', "
        "'attendance') group by district_code").fetchall())
    conn.commit()
    assert warehouse.recorded() == {code: (horizons[code], AS_OF) for code in CODES}
    # Read may query it (docs/domain.md, "Tool rights").
    grantees = conn.execute("select grantee from information_schema.role_table_grants where table_schema = 'state' "
                            "and table_name = 'att_day_aggregation' and privilege_type = 'SELECT'").fetchall()
    conn.commit()
    assert ("attendance_read",) in grantees


def test_refresh_of_selected_districts_leaves_the_others_untouched(warehouse: Warehouse) -> None:
    conn = warehouse.conn
    before = partitions(conn)
    sums = {code: checksum(conn, code) for code in CODES}
    warehouse.aggregate(AS_OF, districts=["D02"], full_refresh=True)
    after = partitions(conn)
    assert after["att_day_aggregation__d01"] == before["att_day_aggregation__d01"]
    assert after["att_day_aggregation__d03"] == before["att_day_aggregation__d03"]
    assert after["att_day_aggregation__d02"] != before["att_day_aggregation__d02"]  # rebuilt and swapped in
    assert {code: checksum(conn, code) for code in CODES} == sums
    assert warehouse.differences(AS_OF) == (0, 0)


def row_versions(conn: psycopg.Connection) -> str:
    """Where every row is and which transaction wrote it: any delete or insert changes this."""
    row = conn.execute("select md5(string_agg(tableoid::text || ctid::text || xmin::text, '|' "
                       "order by tableoid, ctid)) from state.att_day_aggregation").fetchone()
    conn.commit()
    assert row is not None
    return str(row[0])


def built_at(conn: psycopg.Connection) -> dict[str, dt.datetime]:
    rows = conn.execute("select district_code, built_at from state.model_build "
                        "where model_name = 'att_day_aggregation'").fetchall()
    conn.commit()
    return dict(rows)


def test_a_run_with_nothing_new_leaves_every_row_in_place(warehouse: Warehouse) -> None:
    conn = warehouse.conn
    versions, recorded, built = row_versions(conn), warehouse.recorded(), built_at(conn)
    result = warehouse.aggregate(AS_OF)
    assert "update none; unchanged D01, D02, D03" in result.stdout
    assert row_versions(conn) == versions
    assert warehouse.recorded() == recorded
    assert all(built_at(conn)[code] > built[code] for code in CODES)  # the run is still recorded
    # A new as-of date is a change: the next day's rows are computed.
    result = warehouse.aggregate(AS_OF + dt.timedelta(1))
    assert "update D01, D02, D03; unchanged none" in result.stdout
    assert warehouse.differences(AS_OF + dt.timedelta(1)) == (0, 0)
    warehouse.aggregate(AS_OF)
    assert warehouse.differences(AS_OF) == (0, 0)


def test_a_failing_run_leaves_table_and_records_as_they_were(warehouse: Warehouse) -> None:
    conn = warehouse.conn
    sums = {code: checksum(conn, code) for code in CODES}
    recorded = warehouse.recorded()
    layout = partitions(conn)
    backdated = conn.execute("select count(*) from state.backdated_change").fetchone()
    # Two periods of ~2 billion minutes make scheduled_minutes overflow an integer mid-run.
    conn.execute("update state.period set period_minutes = 2000000000 where district_code = 'D03'")
    conn.commit()
    try:
        result = dbt_runner.run_dbt(["run", "--select", "att_day_aggregation"], as_of_date=AS_OF + dt.timedelta(1),
                                    full_refresh=True)
        assert not result.success
        assert "out of range" in result.failure_message
        assert {code: checksum(conn, code) for code in CODES} == sums
        assert warehouse.recorded() == recorded
        assert partitions(conn) == layout
        assert conn.execute("select count(*) from state.backdated_change").fetchone() == backdated
    finally:
        # state.period was edited behind landing's back: an incremental run would see no landing change.
        restored = dbt_runner.run_dbt(["run", "--select", "period"], as_of_date=AS_OF, state_replace=True)
        restored.raise_for_failure()
    assert warehouse.differences(AS_OF) == (0, 0)


def test_full_refresh_of_everything_keeps_the_table_and_what_depends_on_it(warehouse: Warehouse) -> None:
    conn = warehouse.conn
    table_oid = conn.execute("select 'state.att_day_aggregation'::regclass::oid").fetchone()
    conn.execute("drop view if exists public.aggregation_days")
    conn.execute("create view public.aggregation_days as select district_code, count(*) as days "
                 "from state.att_day_aggregation group by district_code")
    conn.commit()
    before = dict(conn.execute("select * from public.aggregation_days").fetchall())
    conn.commit()  # an open reader would make the swap wait for it
    warehouse.aggregate(AS_OF, full_refresh=True)
    assert conn.execute("select 'state.att_day_aggregation'::regclass::oid").fetchone() == table_oid
    assert dict(conn.execute("select * from public.aggregation_days").fetchall()) == before
    conn.commit()
    assert warehouse.differences(AS_OF) == (0, 0)
    assert "%(as_of_date)s" in REFERENCE_SQL
