"""District codes are identities and the registry is the truth about which districts exist (issue 8, points
1, 2 and 13): one upper-case form of every code, districts enter the state with their first successful load,
removed districts are neither built nor reported until they are retired on record, and a district whose
source cannot be resolved fails alone."""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Callable
from datetime import date

import psycopg
import pytest

from orchestration.cli import main as cli_main
from orchestration.dbt import runner as dbt_runner
from orchestration.districts.admin import DistrictAdminError, retire_district
from orchestration.districts.contract import TABLES
from orchestration.districts.registry import District, DistrictSource, write_registry
from orchestration.monitoring.sync_status import format_table, sync_status_rows
from orchestration.settings import registry_path
from orchestration.warehouse import database
from tests.support.warehouse import landing_checksums

MakeDistrict = Callable[..., District]
AS_OF = date(2026, 9, 2)
CODE_TABLES = ("district", "load_batch", "load_log", "load_failure", "superseded_row")


def build() -> dbt_runner.DbtRunResult:
    result = dbt_runner.run_dbt(["build"], as_of_date=AS_OF)
    assert result.success, result.failure_message
    return result


def scalar(statement: str, params: object = None) -> object:
    with database.connect() as conn:
        row = conn.execute(statement, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def aggregation_rows(code: str) -> int:
    return int(scalar("select count(*) from state.att_day_aggregation where district_code = %s", (code,)))  # type: ignore[arg-type]


def report_districts() -> dict[str, list[str]]:
    with database.connect() as conn:
        return {table: [row[0] for row in conn.execute(
            f"select distinct district_code from reports.{table} order by 1").fetchall()]
            for table in ("student_attendance", "school_attendance")}


def stored_codes() -> list[tuple[str, bool]]:
    with database.connect() as conn:
        return [(str(code), bool(current)) for code, current in conn.execute(
            "select district_code, in_registry from landing.district order by 1").fetchall()]


def renamed(district: District, code: str) -> District:
    return District(code=code, name=district.name, source=district.source)


# --- point 1: one canonical form --------------------------------------------------------------------------

def test_a_lower_case_registry_code_is_the_same_district_and_never_empties_it(
        state_db: str, make_district: MakeDistrict) -> None:
    """Before: `d01` entered landing.district beside D01 and the next build emptied D01's aggregation."""
    district = make_district("D01")
    write_registry(registry_path(), [district])
    assert cli_main(["load"]) == 0
    build()
    before = aggregation_rows("D01")
    assert before > 0
    write_registry(registry_path(), [renamed(district, "d01")])
    load_exit = cli_main(["load"])
    build()
    assert aggregation_rows("D01") == before
    assert load_exit == 0
    assert stored_codes() == [("D01", True)]
    assert report_districts() == {"student_attendance": ["D01"], "school_attendance": ["D01"]}
    assert cli_main(["load", "--district", "d01"]) == 0  # command-line codes are canonical too


def test_dbt_vars_take_codes_in_any_case() -> None:
    assert dbt_runner.dbt_vars(["d01", "D01", "d_2"])["districts"] == ["D01", "D_2"]


def test_no_lower_case_code_can_be_stored(state_db: str, make_district: MakeDistrict) -> None:
    write_registry(registry_path(), [make_district("D01")])
    assert cli_main(["load"]) == 0
    with database.connect(autocommit=True) as conn:
        for table in CODE_TABLES:
            constraint = scalar("select count(*) from pg_constraint where conrelid = %s::regclass and contype = 'c' "
                                "and pg_get_constraintdef(oid) ilike '%%upper(district_code)%%'", (f"landing.{table}",))
            assert constraint == 1, table
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("insert into landing.district (district_code, name, source) values ('d01', 'x', 'y')")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("insert into landing.load_batch (district_code, started_at) values ('d01', now())")
        # The district tables too (a row of a lower-case code would find no partition anyway).
        for spec in TABLES:
            assert scalar("select count(*) from pg_constraint where conname = %s",
                          (f"{spec.name}_district_code_canonical",)) >= 1, spec.name


def test_a_code_differing_in_case_from_one_in_the_state_is_refused_by_name(
        state_db: str, make_district: MakeDistrict, capsys: pytest.CaptureFixture[str]) -> None:
    """A state made before codes were canonical may hold `d05`; the registry's D05 is refused, not merged."""
    d01, d05 = make_district("D01"), make_district("D05")
    write_registry(registry_path(), [d01])
    assert cli_main(["load"]) == 0
    with database.connect(autocommit=True) as conn:
        conn.execute("alter table landing.district drop constraint district_district_code_canonical")
        conn.execute("insert into landing.district (district_code, name, source) values ('d05', 'Old', 'old')")
        before = landing_checksums(conn)
    write_registry(registry_path(), [d01, d05])
    capsys.readouterr()
    assert cli_main(["load"]) == 2
    error = capsys.readouterr().err
    assert "registry code D05 vs 'd05' in the state" in error and "Traceback" not in error
    assert cli_main(["build", "--as-of-date", AS_OF.isoformat()]) == 2
    assert "D05" in capsys.readouterr().err
    with database.connect() as conn:
        assert landing_checksums(conn) == before
    # The old spelling is a district of its own in the state; retiring it clears the way.
    assert retire_district("d05", yes=True)[0] == "d05"
    assert cli_main(["load"]) == 0
    assert stored_codes() == [("D01", True), ("D05", True)]
    assert scalar("select count(*) from pg_constraint where conname = 'district_district_code_canonical'") == 1


# --- point 2: the registry is the truth -------------------------------------------------------------------

def test_a_district_enters_the_state_only_with_its_first_successful_load(
        state_db: str, make_district: MakeDistrict) -> None:
    broken = District("D02", "Broken", DistrictSource("database", database="no_such_district_db"))
    write_registry(registry_path(), [make_district("D01"), broken])
    assert cli_main(["load"]) == 1
    assert scalar("select string_agg(district_code, ',' order by 1) from landing.district") == "D01"
    assert stored_codes() == [("D01", True)]


def test_a_removed_district_is_not_built_or_reported_until_retired_on_record(
        state_db: str, make_district: MakeDistrict, capsys: pytest.CaptureFixture[str]) -> None:
    d01, d02 = make_district("D01"), make_district("D02")
    write_registry(registry_path(), [d01, d02])
    assert cli_main(["load"]) == 0
    assert cli_main(["build", "--as-of-date", AS_OF.isoformat()]) == 0
    assert report_districts() == {"student_attendance": ["D01", "D02"], "school_attendance": ["D01", "D02"]}
    d02_state = aggregation_rows("D02")

    write_registry(registry_path(), [d01])
    assert cli_main(["build", "--as-of-date", AS_OF.isoformat()]) == 0
    assert stored_codes() == [("D01", True), ("D02", False)]
    assert report_districts() == {"student_attendance": ["D01"], "school_attendance": ["D01"]}
    assert aggregation_rows("D02") == d02_state  # kept, not built, until retired
    rows = {row["district"]: row for row in sync_status_rows()}
    assert rows["D01"]["in_registry"] and not rows["D02"]["in_registry"] and not rows["D02"]["stale"]
    assert "D02 (removed from registry)" in format_table(list(rows.values()))
    capsys.readouterr()
    assert cli_main(["districts", "list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"D01 +in registry, loaded", listing) and re.search(r"D02 +removed from registry", listing)

    # Retiring: refused while in the registry, and without confirmation; then everything of D02 goes.
    assert cli_main(["districts", "retire", "D01"]) == 2
    assert "still in the registry" in capsys.readouterr().err
    assert cli_main(["districts", "retire", "D02"]) == 2  # no --yes and no terminal
    assert "confirm with --yes" in capsys.readouterr().err
    assert aggregation_rows("D02") == d02_state
    assert cli_main(["districts", "retire", "d02", "--yes"]) == 0
    assert "retired district D02" in capsys.readouterr().out
    with database.connect() as conn:
        tables = conn.execute(
            "select n.nspname || '.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "join pg_attribute a on a.attrelid = c.oid and a.attname = 'district_code' "
            "where n.nspname in ('landing', 'state', 'reports') and c.relkind in ('r', 'p') "
            "and c.relname <> 'district_retirement'").fetchall()
        left = {name: conn.execute(f"select count(*) from {name} where district_code = 'D02'").fetchone()[0]  # type: ignore[index]
                for (name,) in tables}
        assert set(left.values()) == {0}, left
        assert conn.execute("select count(*) from pg_class where relname like '%%\\_\\_d02'").fetchone() == (0,)
        assert aggregation_rows("D01") > 0
        audit = conn.execute("select district_code, db_user = session_user, os_user, rows_deleted "
                             "from landing.district_retirement").fetchall()
    [(code, by_session_user, os_user, deleted)] = audit
    assert (code, by_session_user, os_user) == ("D02", True, getpass.getuser())
    assert deleted["landing.attendance"] == 4 and deleted["state.att_day_aggregation"] == d02_state
    assert [row["district"] for row in sync_status_rows()] == ["D01"]


def test_retire_asks_on_a_terminal(state_db: str, make_district: MakeDistrict, monkeypatch: pytest.MonkeyPatch) -> None:
    d01, d02 = make_district("D01"), make_district("D02")
    write_registry(registry_path(), [d01, d02])
    assert cli_main(["load"]) == 0
    write_registry(registry_path(), [d01])
    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal())
    with pytest.raises(DistrictAdminError, match="not confirmed"):
        retire_district("D02", ask=lambda _prompt: "D01")
    assert stored_codes() == [("D01", True), ("D02", True)]
    assert retire_district("D02", ask=lambda _prompt: "D02")[0] == "D02"
    assert stored_codes() == [("D01", True)]


# --- point 13: per-district failures -----------------------------------------------------------------------

def test_an_unset_secret_variable_fails_that_district_only(
        state_db: str, make_district: MakeDistrict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ATTENDANCE_TEST_UNSET_URL", raising=False)
    unset = District("D02", "Unset", DistrictSource("url", url_env="ATTENDANCE_TEST_UNSET_URL"))
    write_registry(registry_path(), [make_district("D01"), unset, make_district("D03")])
    capsys.readouterr()
    assert cli_main(["load"]) == 1
    captured = capsys.readouterr()
    assert "D01: loaded" in captured.out and "D03: loaded" in captured.out
    assert "D02: FAILED, landing unchanged: district D02: environment variable ATTENDANCE_TEST_UNSET_URL is not set" \
        in captured.out
    assert "1 of 3 district load(s) failed: D02" in captured.err and "Traceback" not in captured.err
    assert scalar("select string_agg(district_code, ',') from landing.load_failure") == "D02"
    assert stored_codes() == [("D01", True), ("D03", True)]


def test_a_structural_registry_error_refuses_the_whole_file_before_anything_is_written(
        state_db: str, make_district: MakeDistrict, capsys: pytest.CaptureFixture[str]) -> None:
    registry_path().write_text(json.dumps({"districts": [
        {"code": "D01", "source": {"database": make_district("D01").source.database}},
        {"code": "d01", "source": {"database": "other"}}]}))
    assert cli_main(["load"]) == 2
    assert "district code D01 is listed twice" in capsys.readouterr().err
    with database.connect() as conn:
        assert conn.execute("select to_regclass('landing.district')").fetchone() == (None,)
