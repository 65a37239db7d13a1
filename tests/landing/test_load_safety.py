"""Loader input safety (issue 8): the mass-delete guard, one snapshot per district database, timestamps
with an offset, CSV extracts with a BOM, bad headers, multi-line records or bad encoding, and a server
lost during a load. Every test runs real loads against the embedded PostgreSQL."""

from __future__ import annotations

import csv
import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from orchestration.cli import main as cli_main
from orchestration.districts.contract import TABLES
from orchestration.districts.registry import District, DistrictSource, RegistryError, parse_registry
from orchestration.districts.sources import DatabaseSource
from orchestration.landing.load import load_districts
from orchestration.warehouse import database
from tests.support.districts import export_csv
from tests.support.warehouse import district_conn, landing_checksums

MakeDistrict = Callable[..., District]
EXTRA_ATTENDANCE = 30  # with the sample's 4: 34 live rows, above the guard's floor of 20
LIVE = 4 + EXTRA_ATTENDANCE


def add_attendance(district: District, count: int = EXTRA_ATTENDANCE) -> None:
    with district_conn(district) as source:
        source.execute("insert into attendance select 600 + g, 1, 10, 111, date '2026-09-01' + g, 'A', 'E', null, "
                       "null, null, '2026-09-01 09:00' from generate_series(1, %s) g", (count,))


def extract(folder: Path, code: str = "E01") -> District:
    return District(code, f"Extract {code}", DistrictSource("extract_dir", extract_dir=folder))


def registry_file(path: Path, districts: list[District], **settings: dict[str, Any]) -> Path:
    """A registry of the districts; `settings` adds keys to a district's entry (by code)."""
    entries = []
    for district in districts:
        source = district.source
        entry: dict[str, Any] = {"code": district.code, "name": district.name,
                                 "source": {"database": source.database} if source.kind == "database"
                                 else {"extract_dir": str(source.extract_dir)}}
        entry.update(settings.get(district.code, {}))
        entries.append(entry)
    path.write_text(yaml.safe_dump({"districts": entries}))
    return path


def load(registry: Path, *flags: str) -> int:
    return cli_main(["--registry", str(registry), "load", *flags])


def live_rows(conn: psycopg.Connection, table: str, code: str) -> int:
    row = conn.execute(f"select count(*) from landing.{table} where district_code = %s and not _deleted",
                       (code,)).fetchone()
    assert row is not None
    return int(row[0])


def overrides(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("select district_code, table_name, live_rows, deleted_rows, limit_share::float, allowed_by "
                        # Districts load two at a time: their rows' order between districts is not defined.
                        "from landing.mass_delete_override order by district_code, override_id").fetchall()


def edit_csv(path: Path, edit: Callable[[list[list[str]]], None]) -> None:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    edit(rows)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def failed_with(district: District) -> str:
    [result] = load_districts([district])
    assert not result.ok and result.error is not None
    return result.error


# --- point 3: no silent mass deletion ----------------------------------------------------------------


def test_header_only_file_is_refused_until_the_flag_allows_it_and_the_override_is_recorded(
        state_db: str, make_district: MakeDistrict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_district("D01")
    add_attendance(source)
    export_csv(source, tmp_path / "extract")
    registry = registry_file(tmp_path / "registry.yml", [extract(tmp_path / "extract")])
    assert load(registry) == 0
    attendance_csv = tmp_path / "extract" / "attendance.csv"
    attendance_csv.write_text(attendance_csv.read_text().splitlines()[0] + "\n")
    with database.connect() as conn:
        before = landing_checksums(conn)
    capsys.readouterr()

    assert load(registry) == 1
    out = capsys.readouterr().out
    assert (f"E01: FAILED, landing unchanged: district E01, table attendance: the load would delete {LIVE} of "
            f"{LIVE} live rows (100%, limit 50%); if this is intended, rerun with --allow-mass-delete") in out
    with database.connect() as conn:
        assert landing_checksums(conn) == before
        assert overrides(conn) == []

    assert load(registry, "--allow-mass-delete") == 0
    with database.connect() as conn:
        assert live_rows(conn, "attendance", "E01") == 0
        assert overrides(conn) == [("E01", "attendance", LIVE, LIVE, 0.5, "flag --allow-mass-delete")]
        recorded = conn.execute("select o.batch_id = (select max(batch_id) from landing.load_batch), o.db_user, "
                                "o.os_user, o.db_user = session_user from landing.mass_delete_override o").fetchone()
        assert recorded is not None and recorded[0] and recorded[3] and recorded[2] == getpass.getuser()


def test_registry_setting_raises_the_limit_or_allows_every_deletion(
        state_db: str, make_district: MakeDistrict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d01, d02 = make_district("D01"), make_district("D02")
    for district in (d01, d02):
        add_attendance(district)
    registry = tmp_path / "registry.yml"
    assert load(registry_file(registry, [d01, d02])) == 0
    with district_conn(d01) as source:
        source.execute("delete from attendance where attendance_id > 600 and attendance_id <= 630")  # 30 of 34
    with district_conn(d02) as source:
        source.execute("delete from attendance")
    capsys.readouterr()

    assert load(registry_file(registry, [d01, d02], D01={"max_delete_share": 0.8})) == 1
    out = capsys.readouterr().out
    assert "D01: FAILED" in out and f"would delete 30 of {LIVE} live rows (88%, limit 80% set by the district's " \
        "max_delete_share)" in out
    assert f"D02: FAILED, landing unchanged: district D02, table attendance: the load would delete {LIVE} of {LIVE}" \
        in out

    assert load(registry_file(registry, [d01, d02], D01={"max_delete_share": 0.9},
                              D02={"allow_mass_delete": True})) == 0
    with database.connect() as conn:
        assert live_rows(conn, "attendance", "D01") == 4 and live_rows(conn, "attendance", "D02") == 0
        assert overrides(conn) == [("D01", "attendance", LIVE, 30, 0.5, "registry max_delete_share 0.9"),
                                   ("D02", "attendance", LIVE, LIVE, 0.5, "registry allow_mass_delete")]


def test_floor_lets_small_tables_lose_rows_and_is_configurable(
        state_db: str, make_district: MakeDistrict, monkeypatch: pytest.MonkeyPatch) -> None:
    district = make_district("D01")
    assert load_districts([district])[0].ok
    with district_conn(district) as source:
        source.execute("delete from attendance")  # every one of 4 rows: below the default floor of 20
    monkeypatch.setenv("ATTENDANCE_MASS_DELETE_MIN_ROWS", "2")
    assert "table attendance: the load would delete 4 of 4 live rows (100%, limit 50%)" in failed_with(district)
    monkeypatch.delenv("ATTENDANCE_MASS_DELETE_MIN_ROWS")
    [result] = load_districts([district])
    assert result.ok and next(t for t in result.tables if t.table == "attendance").deleted == 4


def test_malformed_guard_settings_are_refused(
        state_db: str, make_district: MakeDistrict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    registry = registry_file(tmp_path / "registry.yml", [make_district("D01")])
    monkeypatch.setenv("ATTENDANCE_MAX_DELETE_SHARE", "lots")
    assert load(registry) == 2
    assert "environment variable ATTENDANCE_MAX_DELETE_SHARE='lots' is not a share between 0 and 1" in \
        capsys.readouterr().err
    for setting, message in [("allow_mass_delete: yes please", "allow_mass_delete must be true or false"),
                             ("max_delete_share: 1.5", "max_delete_share must be a share between 0 and 1")]:
        text = f"districts:\n  - code: D01\n    source: {{database: x}}\n    {setting}\n"
        with pytest.raises(RegistryError, match=f"district D01: {message}"):
            parse_registry(text, tmp_path)


def test_resync_job_config_allows_a_mass_delete(
        state_db: str, make_district: MakeDistrict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import DagsterInstance, job

    from orchestration.dagster_defs.jobs import reload_landing

    @job
    def reload_only() -> None:
        reload_landing()

    district = make_district("D01")
    add_attendance(district)
    monkeypatch.setenv("ATTENDANCE_REGISTRY", str(registry_file(tmp_path / "registry.yml", [district])))
    assert load_districts([district])[0].ok
    with district_conn(district) as source:
        source.execute("delete from attendance")

    def run(allow: bool) -> bool:
        config = {"ops": {"reload_landing": {"config": {"districts": ["D01"], "allow_mass_delete": allow}}}}
        with DagsterInstance.ephemeral() as instance:
            return reload_only.execute_in_process(run_config=config, instance=instance, raise_on_error=False).success

    assert not run(False)
    with database.connect() as conn:
        assert live_rows(conn, "attendance", "D01") == LIVE
    assert run(True)
    with database.connect() as conn:
        assert live_rows(conn, "attendance", "D01") == 0
        [(code, table, live, deleted, _, allowed_by)] = overrides(conn)
        assert (code, table, live, deleted) == ("D01", "attendance", LIVE, LIVE)
        assert allowed_by.startswith("run ") and allowed_by.endswith("config allow_mass_delete")


def test_landing_asset_config_allows_a_mass_delete(
        state_db: str, make_district: MakeDistrict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import DagsterInstance, StaticPartitionsDefinition, materialize

    from orchestration.dagster_defs.landing_assets import build_landing_assets

    district = make_district("D01")
    add_attendance(district)
    monkeypatch.setenv("ATTENDANCE_REGISTRY", str(registry_file(tmp_path / "registry.yml", [district])))
    assert load_districts([district])[0].ok
    with district_conn(district) as source:
        source.execute("delete from attendance")
    assets = build_landing_assets(StaticPartitionsDefinition(["D01"]))

    def run(config: dict[str, Any]) -> bool:
        with DagsterInstance.ephemeral() as instance:
            return materialize([assets], partition_key="D01", run_config=config, instance=instance,
                               raise_on_error=False).success

    assert not run({})
    assert run({"ops": {"landing_load": {"config": {"allow_mass_delete": True}}}})
    with database.connect() as conn:
        assert live_rows(conn, "attendance", "D01") == 0
        assert [row[:4] for row in overrides(conn)] == [("D01", "attendance", LIVE, LIVE)]


# --- point 4: one snapshot per district database ----------------------------------------------------


def test_district_database_is_read_from_one_snapshot(
        state_db: str, make_district: MakeDistrict, monkeypatch: pytest.MonkeyPatch) -> None:
    district = make_district("D01")
    original = DatabaseSource.copy_table

    def copy_then_commit_a_new_student(self: DatabaseSource, spec: Any, target: Any, state: Any) -> list[str]:
        names = original(self, spec, target, state)
        if spec.name == "person":  # a SIS transaction commits between the reads of person and attendance
            with district_conn(district) as sis, sis.transaction():
                sis.execute("insert into person values (4, 'ST0004', '1004', 'Diaz', 'Eva', '2011-01-01', 'F', "
                            "'2026-09-02 08:00')")
                sis.execute("insert into attendance values (505, 4, 10, 111, '2026-09-02', 'A', 'E', null, null, "
                            "null, '2026-09-02 09:00')")
        return names

    monkeypatch.setattr(DatabaseSource, "copy_table", copy_then_commit_a_new_student)
    [result] = load_districts([district])
    assert result.ok, result.error
    with database.connect() as conn:
        assert (live_rows(conn, "person", "D01"), live_rows(conn, "attendance", "D01")) == (3, 4)
    monkeypatch.undo()
    assert load_districts([district])[0].ok
    with database.connect() as conn:
        assert (live_rows(conn, "person", "D01"), live_rows(conn, "attendance", "D01")) == (4, 5)


# --- point 5: timestamps with an offset --------------------------------------------------------------

OFFSET_MESSAGE = "a timestamp with a time zone offset; the contract's timestamps are local times without an offset"


@pytest.mark.parametrize("value", ["2026-08-10 12:31:00+05:00", "2026-08-10T12:31:00Z", "2026-08-10 12:31:00+0500",
                                   "2026-08-10 12:31-05", "2026-08-10 12:31:00 UTC"])
def test_csv_timestamp_with_an_offset_is_refused(
        state_db: str, make_district: MakeDistrict, tmp_path: Path, value: str) -> None:
    folder = tmp_path / "extract"
    export_csv(make_district("D01"), folder)

    def set_modified(rows: list[list[str]]) -> None:
        rows[2][rows[0].index("modified_date")] = value

    edit_csv(folder / "person.csv", set_modified)
    assert failed_with(extract(folder)) == \
        f"district E01, table person, line 3, column modified_date: {OFFSET_MESSAGE}: {value!r}"


def test_local_timestamps_are_still_accepted(state_db: str, make_district: MakeDistrict, tmp_path: Path) -> None:
    folder = tmp_path / "extract"
    export_csv(make_district("D01"), folder)

    def set_modified(rows: list[list[str]]) -> None:
        for row, value in zip(rows[1:], ["2026-08-10 12:31", "2026-08-10T12:31:00.25", "2026-08-10"], strict=True):
            row[rows[0].index("modified_date")] = value

    edit_csv(folder / "person.csv", set_modified)
    assert load_districts([extract(folder)])[0].ok


def test_timestamptz_column_of_a_district_database_is_refused(state_db: str, make_district: MakeDistrict) -> None:
    district = make_district("D01")
    with district_conn(district) as source:
        source.execute("alter table person alter column modified_date type timestamptz")
    error = failed_with(district)
    assert error.startswith(f"district D01, table person, row person_id=1, column modified_date: {OFFSET_MESSAGE}")


# --- point 14: CSV extracts --------------------------------------------------------------------------


def test_csv_with_a_byte_order_mark_loads(state_db: str, make_district: MakeDistrict, tmp_path: Path) -> None:
    folder = tmp_path / "extract"
    export_csv(make_district("D01"), folder)
    for spec in TABLES:
        path = folder / f"{spec.name}.csv"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    [result] = load_districts([extract(folder)])
    assert result.ok, result.error
    with database.connect() as conn:
        assert live_rows(conn, "school", "E01") == 2 and live_rows(conn, "attendance", "E01") == 4


def test_duplicate_header_column_is_named(state_db: str, make_district: MakeDistrict, tmp_path: Path) -> None:
    folder = tmp_path / "extract"
    export_csv(make_district("D01"), folder)
    edit_csv(folder / "person.csv", lambda rows: [row.append(row[3]) for row in rows])
    assert failed_with(extract(folder)) == ("district E01, table person: extract file person.csv: column last_name "
                                            "appears twice in the header (columns 4 and 9)")


def test_too_many_header_columns_are_named(state_db: str, make_district: MakeDistrict, tmp_path: Path) -> None:
    folder = tmp_path / "extract"
    export_csv(make_district("D01"), folder)

    def widen(rows: list[list[str]]) -> None:
        for n, row in enumerate(rows):
            row.extend(f"extra_{i}" if n == 0 else "" for i in range(1700))

    edit_csv(folder / "school.csv", widen)
    assert failed_with(extract(folder)) == ("district E01, table school: extract file school.csv has 1,704 columns "
                                            "in its header; at most 1,599 are supported")


def multiline_attendance(folder: Path) -> list[list[str]]:
    """attendance.csv with comments spanning three lines in its first two records: 501 starts on line 2,
    502 on line 5, 503 on line 8 and 504 on line 9."""
    rows: list[list[str]] = []

    def edit(table: list[list[str]]) -> None:
        comments = table[0].index("comments")
        for row in table[1:3]:
            row[comments] = "first line\nsecond line\nthird line"
        rows.extend(table)

    edit_csv(folder / "attendance.csv", edit)
    return rows


def test_csv_value_error_names_the_physical_line_of_the_record(
        state_db: str, make_district: MakeDistrict, tmp_path: Path) -> None:
    folder = tmp_path / "extract"
    export_csv(make_district("D01"), folder)
    rows = multiline_attendance(folder)
    rows[4][rows[0].index("status")] = "Q"
    with open(folder / "attendance.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert failed_with(extract(folder)).startswith(
        "district E01, table attendance, line 9, column status: unknown code")


def test_csv_structure_errors_name_the_physical_line_where_the_record_starts(
        state_db: str, make_district: MakeDistrict, tmp_path: Path) -> None:
    folder = tmp_path / "extract"
    export_csv(make_district("D01"), folder)
    rows = multiline_attendance(folder)
    rows[4].append("one field too many")
    with open(folder / "attendance.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert failed_with(extract(folder)) == ("district E01, table attendance: attendance.csv, line 9: extra data "
                                            "after last expected column")
    # An opening quote never closed: COPY reads to the end of the file; the error names where the record starts.
    text = (folder / "attendance.csv").read_text().splitlines(keepends=True)
    text[7] = text[7].replace(",,,", ',,,"never closed', 1)
    (folder / "attendance.csv").write_text("".join(text[:9]))
    assert failed_with(extract(folder)) == ("district E01, table attendance: attendance.csv, line 8: unterminated "
                                            "CSV quoted field")


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "district E01, table attendance: extract file attendance.csv is empty (0 bytes, not even a header row)"),
    (None, "district E01, table person: extract file person.csv is not UTF-8 text (line 3: byte 0xe9); save it as "
     "UTF-8"),
], ids=["empty file", "latin-1 file"])
def test_empty_or_non_utf8_file_has_one_clear_message(
        state_db: str, make_district: MakeDistrict, tmp_path: Path, content: bytes | None, expected: str) -> None:
    folder = tmp_path / "extract"
    export_csv(make_district("D01"), folder)
    if content is not None:
        (folder / "attendance.csv").write_bytes(content)
    else:
        person = folder / "person.csv"
        person.write_bytes(person.read_text().replace("Chen", "Chén").encode("latin-1"))
    assert failed_with(extract(folder)) == expected


# --- point 14: a server lost during a load -----------------------------------------------------------


def test_state_server_lost_during_a_load_fails_that_district_only(
        state_db: str, make_district: MakeDistrict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    d01, d02 = make_district("D01"), make_district("D02")
    original = DatabaseSource.copy_table

    def lose_the_state_server(self: DatabaseSource, spec: Any, target: Any, state: psycopg.Connection) -> list[str]:
        if spec.name == "attendance" and self.conn.info.dbname == d01.source.database:
            with database.connect(autocommit=True) as admin:
                admin.execute("select pg_terminate_backend(%s)", (state.info.backend_pid,))
        return original(self, spec, target, state)

    monkeypatch.setattr(DatabaseSource, "copy_table", lose_the_state_server)
    assert load(registry_file(tmp_path / "registry.yml", [d01, d02])) == 1
    captured = capsys.readouterr()
    assert "D01: FAILED, landing unchanged: district D01: lost the connection to the state database during the " \
        "load" in captured.out
    assert "D02: loaded" in captured.out and "1 of 2 district load(s) failed: D01" in captured.err
    with database.connect() as conn:
        assert live_rows(conn, "attendance", "D01") == 0 and live_rows(conn, "attendance", "D02") == 4


def test_district_server_lost_during_a_load_names_the_table(
        state_db: str, make_district: MakeDistrict, monkeypatch: pytest.MonkeyPatch) -> None:
    district = make_district("D01")
    original = DatabaseSource.copy_table

    def lose_the_district_server(self: DatabaseSource, spec: Any, target: Any, state: Any) -> list[str]:
        if spec.name == "enrollment":
            with database.connect(autocommit=True) as admin:
                admin.execute("select pg_terminate_backend(%s)", (self.conn.info.backend_pid,))
        return original(self, spec, target, state)

    monkeypatch.setattr(DatabaseSource, "copy_table", lose_the_district_server)
    assert failed_with(district).startswith(
        "district D01, table enrollment: lost the connection to the district database while reading")


def test_unreachable_state_server_is_one_message(
        tmp_path: Path, make_district: MakeDistrict, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    registry = registry_file(tmp_path / "registry.yml", [make_district("D01")])
    monkeypatch.setenv("ATTENDANCE_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/attendance_state")
    assert load(registry) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("attendance-sync: ") and "cannot be reached" in err and "127.0.0.1:1" in err
    assert len(err.splitlines()) == 1
