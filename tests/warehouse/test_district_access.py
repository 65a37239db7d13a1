"""District-level access (issue 8 point 12), enforced by PostgreSQL: two districts loaded and built, a
district-level Read login for D01 sees only D01's rows, a district-level Write login loads only D01.

Logins are created with a password and connect with it, so the tests hold with `trust` and with
password authentication alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from orchestration import cli
from orchestration.dbt import runner as dbt_runner
from orchestration.districts.registry import District, DistrictSource, write_registry
from orchestration.landing.load import load_districts
from orchestration.warehouse import database
from orchestration.warehouse import rights as tool_rights
from tests.support.districts import create_district_database
from tests.support.warehouse import landing_checksums, state_database, unique_name

AS_OF = date(2026, 9, 2)
PASSWORD = "district pass&port=1"  # characters that must not leak into a connection string


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, District]]:
    """D01 and D02 loaded and fully built; D02's students have state ids of their own."""
    districts: dict[str, District] = {}
    registry = tmp_path_factory.mktemp("registry") / "districts.yml"
    try:
        with state_database("test_district_access"), pytest.MonkeyPatch.context() as patch:
            for code in ("D01", "D02"):
                source = unique_name(f"district_{code.lower()}")
                districts[code] = District(code, f"District {code}", DistrictSource("database", database=source))
                create_district_database(source)
            with database.connect(districts["D02"].source.database, autocommit=True) as conn:
                conn.execute("update person set state_id = 'D2' || state_id")
            write_registry(registry, list(districts.values()))
            patch.setenv("ATTENDANCE_REGISTRY", str(registry))
            assert all(result.ok for result in load_districts(list(districts.values())))
            build()
            yield districts
    finally:
        for district in districts.values():
            database.drop_database(str(district.source.database))


def build(*args: str, districts: list[str] | None = None, full_refresh: bool = False) -> None:
    result = dbt_runner.run_dbt(list(args) or ["build"], districts=districts, full_refresh=full_refresh,
                                as_of_date=AS_OF)
    assert result.success, result.failure_message


@pytest.fixture
def login(warehouse: dict[str, District]) -> Iterator[str]:
    """A new login role with a password (and no rights)."""
    name = unique_name("staff")
    with database.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login password {}").format(sql.Identifier(name), sql.Literal(PASSWORD)))
        for district in warehouse.values():  # the district databases let it read their tables
            with database.connect(district.source.database, autocommit=True) as source:
                source.execute(sql.SQL("grant select on all tables in schema public to {}").format(
                    sql.Identifier(name)))
    yield name
    with database.connect(autocommit=True) as conn:
        conn.execute("delete from landing.district_grant where grantee = %s", (name,))
        for district in warehouse.values():
            with database.connect(district.source.database, autocommit=True) as source:
                source.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def connect_as(user: str) -> psycopg.Connection:
    settings = replace(database.ensure_server(), user=user, password=PASSWORD)
    return psycopg.connect(settings.conninfo(), autocommit=True)


@contextmanager
def environment_of(user: str) -> Iterator[None]:
    """Every connection and dbt run in the block logs in as `user`, with its password (as in production)."""
    settings = database.ensure_server()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("PGHOST", settings.host), ("PGPORT", str(settings.port)),
                            ("PGDATABASE", settings.dbname), ("PGUSER", user), ("PGPASSWORD", PASSWORD)):
            patch.setenv(name, value)
        yield


def report_tables(conn: psycopg.Connection) -> list[str]:
    """Every table of state and reports a reader may query (partitions are not queried directly)."""
    return [str(row[0]) for row in conn.execute(
        "select c.oid::regclass::text from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname in ('state', 'reports') and c.relkind in ('r', 'p') and not c.relispartition "
        "order by 1").fetchall()]


def district_counts(conn: psycopg.Connection, table: str) -> dict[str, int]:
    return {str(code): int(count) for code, count in conn.execute(sql.SQL(
        "select district_code, count(*) from {} group by 1").format(sql.SQL(table))).fetchall()}


def has_column(conn: psycopg.Connection, table: str, column: str) -> bool:
    return conn.execute("select 1 from pg_attribute where attrelid = %s::regclass and attname = %s",
                        (table, column)).fetchone() is not None


def assert_sees_only_d01(user: str) -> None:
    with database.connect(autocommit=True) as admin, connect_as(user) as staff:
        tables = report_tables(admin)
        assert "reports.statewide_student_attendance" in tables and "state.att_day_aggregation" in tables
        for table in tables:
            if has_column(admin, table, "district_code"):
                everything = district_counts(admin, table)
                assert district_counts(staff, table) == {k: v for k, v in everything.items() if k == "D01"}, table
        statewide = "select state_id from reports.statewide_student_attendance order by 1"
        assert [row[0] for row in admin.execute(statewide)] == ["D2ST0001", "D2ST0002", "ST0001", "ST0002"]
        assert [row[0] for row in staff.execute(statewide)] == ["ST0001", "ST0002"]


def test_district_reader_sees_only_its_districts_rows_in_every_table(warehouse: dict[str, District],
                                                                     login: str) -> None:
    tool_rights.grant_districts(login, "read", ["D01"])
    with database.connect(autocommit=True) as admin:
        # Every table with rows in both districts is a real test of the filter.
        assert {"D01", "D02"} <= district_counts(admin, "state.att_day_aggregation").keys()
        assert {"D01", "D02"} <= district_counts(admin, "reports.student_attendance").keys()
    assert_sees_only_d01(login)


def test_district_reader_cannot_lift_the_restriction(warehouse: dict[str, District], login: str) -> None:
    tool_rights.grant_districts(login, "read", ["D01"])
    with connect_as(login) as staff:
        for role in ("attendance_write", "attendance_read", "postgres"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                staff.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        # The district role itself gives nothing more than the login's own grants.
        staff.execute("set role attendance_district_read")
        assert district_counts(staff, "state.person") == {"D01": 3}
        staff.execute("reset role")
        for table in ("state.att_day_aggregation__d02", "state.att_day_aggregation__d01", "landing.person",
                      "landing.person__d02", "landing.district_grant"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                staff.execute(sql.SQL("select count(*) from {}").format(sql.SQL(table)))
        # Nor can it grant itself another district.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            staff.execute("insert into landing.district_grant (grantee, access, district_code) "
                          "values (session_user, 'read', 'D02')")


def test_row_security_survives_rebuilds_and_the_partition_swap(warehouse: dict[str, District], login: str) -> None:
    tool_rights.grant_districts(login, "read", ["D01"])
    build("build", districts=["D01", "D02"], full_refresh=True)  # reports recreated, partitions swapped
    assert_sees_only_d01(login)
    with connect_as(login) as staff, pytest.raises(psycopg.errors.InsufficientPrivilege):
        staff.execute("select count(*) from state.att_day_aggregation__d01")


def test_revoke_removes_access_and_show_lists_grants(warehouse: dict[str, District], login: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rights", "grant", login, "read", "--district", "D01", "--district", "D02"]) == 0
    assert cli.main(["rights", "show", login]) == 0
    assert f"{login}: state-level: none; district-level: read D01, D02" in capsys.readouterr().out
    assert cli.main(["rights", "revoke", login, "read", "--district", "D02"]) == 0
    assert_sees_only_d01(login)
    assert cli.main(["rights", "revoke", login, "read", "--district", "D01"]) == 0
    assert tool_rights.show(login).districts == {}
    with connect_as(login) as staff, pytest.raises(psycopg.errors.InsufficientPrivilege):
        staff.execute("select count(*) from state.person")


def test_state_level_reader_still_sees_every_row(warehouse: dict[str, District], login: str) -> None:
    tool_rights.grant(login, "read")
    with database.connect(autocommit=True) as admin, connect_as(login) as staff:
        for table in report_tables(admin):
            if has_column(admin, table, "district_code"):
                assert district_counts(staff, table) == district_counts(admin, table), table
        assert staff.execute("select count(*) from reports.statewide_student_attendance").fetchone() == (4,)


def test_rights_errors_are_one_clear_message(warehouse: dict[str, District], login: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rights", "grant", "nobody_here", "read", "--district", "D01"]) == 2
    assert capsys.readouterr().err.strip() == (
        "attendance-sync: role nobody_here does not exist; create the login first, then grant it a right")
    assert cli.main(["rights", "grant", "nobody_here", "write"]) == 2
    assert "role nobody_here does not exist" in capsys.readouterr().err
    assert cli.main(["rights", "grant", login, "read", "--district", "D09"]) == 2
    assert "district(s) D09 not in the district registry" in capsys.readouterr().err
    tool_rights.grant_districts(login, "write", ["D01"])
    with environment_of(login):  # a district writer may not hand out rights
        assert cli.main(["rights", "grant", login, "write", "--district", "D02"]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"attendance-sync: permission denied: {login} may not grant rights")
        assert "Traceback" not in error
    assert tool_rights.show(login).districts == {"write": ["D01"]}


def test_district_writer_loads_its_district_and_is_refused_another(warehouse: dict[str, District], login: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    tool_rights.grant_districts(login, "write", ["D01"])
    with database.connect(warehouse["D01"].source.database, autocommit=True) as source:
        source.execute("update person set last_name = 'Changed' where person_id = 1")
    with database.connect() as admin:
        before = landing_checksums(admin)
    with environment_of(login):
        assert cli.main(["load", "--district", "D02"]) == 2
        assert capsys.readouterr().err.strip() == (
            f"attendance-sync: permission denied: {login} may not run a load for district(s) D02; its district-level "
            "Write right covers D01 only")
        assert cli.main(["build", "--districts", "D01,D02"]) == 2
        assert "may not run build for district(s) D02" in capsys.readouterr().err
        assert cli.main(["resync", "--districts", "D02"]) == 2
        assert "may not run a resync for district(s) D02" in capsys.readouterr().err
        # Past the CLI, the loader and PostgreSQL still refuse it.
        [refused] = load_districts([warehouse["D02"]])
        assert not refused.ok and f"{login} may not load district D02" in str(refused.error)
    with database.connect() as admin:
        assert landing_checksums(admin) == before
    with environment_of(login):
        assert cli.main(["load", "--district", "D01"]) == 0
        assert "D01: loaded" in capsys.readouterr().out
    with database.connect() as admin:
        after = landing_checksums(admin)
        assert after["person"] != before["person"]
        assert admin.execute("select last_name from landing.person where district_code = 'D01' and person_id = 1"
                             ).fetchone() == ("Changed",)
    with connect_as(login) as staff:
        for role in ("attendance_write", "attendance_read"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                staff.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        for statement in ("update landing.person set last_name = 'X' where district_code = 'D02'",
                          "update landing.load_batch set committed_at = now() where district_code = 'D02'"):
            assert staff.execute(statement).rowcount == 0  # D02's rows are invisible to it
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            staff.execute("insert into landing.load_log (batch_id, district_code, table_name, rows_inserted, "
                          "rows_updated, rows_deleted, rows_unchanged, duration_ms) "
                          "select batch_id, 'D02', 'x', 0, 0, 0, 0, 0 from landing.load_batch limit 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            staff.execute("select landing.create_district_partition('person', 'person__d03', 'D03')")
        assert staff.execute("delete from state.person where district_code = 'D02'").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            staff.execute("delete from reports.student_attendance")


def table_checksum(conn: psycopg.Connection, table: str, district: str | None = None) -> str:
    where = sql.SQL("where district_code = {}").format(district) if district else sql.SQL("")
    row = conn.execute(sql.SQL("select count(*) || ':' || md5(coalesce(string_agg(t::text, '|' order by t::text), "
                               "'')) from {} t {}").format(sql.SQL(table), where)).fetchone()
    assert row is not None
    return str(row[0])


def test_district_writer_builds_and_resyncs_only_its_state_rows(
        warehouse: dict[str, District], login: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ATTENDANCE_DBT_ROLE", "attendance_write")  # restored after the CLI switches it
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    tool_rights.grant_districts(login, "write", ["D01"])
    with database.connect(warehouse["D01"].source.database, autocommit=True) as source:
        source.execute("update person set first_name = 'Resynced' where person_id = 2")
    with database.connect(autocommit=True) as admin:
        others = {table: table_checksum(admin, table, sql.Literal("D02")) for table in ("state.person",
                                                                                         "state.attendance")}
        reports = table_checksum(admin, "reports.student_attendance")
    with environment_of(login):
        assert cli.main(["refresh-aggregation", "--districts", "D01"]) == 2
        assert "may not run an aggregation refresh with a full refresh" in capsys.readouterr().err
        assert cli.main(["build", "--districts", "D01", "--full-refresh"]) == 2
        assert "may not run build with a full refresh" in capsys.readouterr().err
        assert cli.main(["resync", "--districts", "D01", "--as-of-date", AS_OF.isoformat()]) == 0, \
            capsys.readouterr()
        assert cli.main(["build", "--as-of-date", AS_OF.isoformat()]) == 0, capsys.readouterr()  # = its districts
        assert "district-level run for D01" in capsys.readouterr().out
    with database.connect(autocommit=True) as admin:
        assert admin.execute("select first_name from state.person where district_code = 'D01' and person_id = 2"
                             ).fetchone() == ("Resynced",)
        assert {table: table_checksum(admin, table, sql.Literal("D02")) for table in others} == others
        assert table_checksum(admin, "reports.student_attendance") == reports


def test_unwritten_registry_path_is_not_needed_for_show(warehouse: dict[str, District], login: str,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTENDANCE_REGISTRY", str(tmp_path / "missing.yml"))
    assert tool_rights.show(login).describe() == f"{login}: state-level: none; district-level: none"


def test_grant_secures_tables_built_before_district_rights(warehouse: dict[str, District], login: str) -> None:
    with database.connect(autocommit=True) as admin:  # as a report built by the previous version was
        admin.execute("drop policy district_level_read on reports.school_attendance; "
                      "drop policy state_level_read on reports.school_attendance; "
                      "alter table reports.school_attendance disable row level security; "
                      "revoke select on reports.school_attendance from attendance_district_read")
    tool_rights.grant_districts(login, "read", ["D01"])
    assert_sees_only_d01(login)


def test_backdated_changes_are_printed_and_row_secured(warehouse: dict[str, District], login: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A correction of D01's attendance of 2026-09-01 (before the last as-of date): the CLI build prints it,
    state.backdated_change keeps it, and a D01 reader sees only D01's rows of that table."""
    from orchestration.dbt.backdated import backdated_changes

    with database.connect(warehouse["D01"].source.database, autocommit=True) as source:
        source.execute("update attendance set status = 'T', present_minutes = 200, modified_date = now() "
                       "where attendance_id = 501")
    assert all(result.ok for result in load_districts([warehouse["D01"]]))
    assert cli.main(["build", "--districts", "D01,D02", "--as-of-date", AS_OF.isoformat()]) == 0
    out = capsys.readouterr().out
    assert ("backdated changes D01: 1 attendance row(s) dated before 2026-09-02 (0 inserted, 1 changed, 0 deleted), "
            "1 student-day(s) changed") in out
    assert "backdated changes D02: 0 attendance row(s)" in out
    tool_rights.grant_districts(login, "read", ["D01"])
    with database.connect(autocommit=True) as admin, connect_as(login) as staff:
        last = backdated_changes(admin)[-2:]
        assert [(row.district_code, row.origin, row.backdated_changed) for row in last] == [
            ("D01", "attendance-sync build", 1), ("D02", "attendance-sync build", 0)]
        assert {"D01", "D02"} <= district_counts(admin, "state.backdated_change").keys()
        assert district_counts(staff, "state.backdated_change").keys() == {"D01"}
        assert {row.district_code for row in backdated_changes(staff)} == {"D01"}
