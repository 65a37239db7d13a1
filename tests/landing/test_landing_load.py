"""Landing loads against the embedded PostgreSQL: diffs, deletes, atomicity and every kind of bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from orchestration.cli import main as cli_main
from orchestration.districts.contract import TABLES
from orchestration.districts.registry import District, DistrictSource, write_registry
from orchestration.landing.load import (
    DistrictLoadError,
    DistrictLoadResult,
    load_district,
    load_districts,
    prepare_warehouse,
)
from orchestration.warehouse import database
from orchestration.warehouse.writer_lock import district_lock_name, lock_row
from tests.support.districts import export_csv
from tests.support.warehouse import district_conn, landing_checksums

MakeDistrict = Callable[..., District]


def load_ok(district: District) -> dict[str, tuple[int, int, int, int]]:
    [result] = load_districts([district])
    assert result.ok, result.error
    return {t.table: (t.inserted, t.updated, t.deleted, t.unchanged) for t in result.tables}


def landing_row(conn: psycopg.Connection, table: str, key: str, value: int, district: str = "D01") -> tuple:
    row = conn.execute(f"select _deleted, _batch_id, _changed_at from landing.{table} "
                       f"where district_code = %s and {key} = %s", (district, value)).fetchone()
    assert row is not None
    return row


def test_first_load_copies_every_table_into_its_district_partition(state_db: str, make_district: MakeDistrict) -> None:
    district = make_district("D01")
    stats = load_ok(district)
    assert stats["attendance"] == (4, 0, 0, 0)
    assert stats["period"] == (8, 0, 0, 0)
    with database.connect() as conn:
        partitions = {row[0] for row in conn.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
            "join pg_class p on p.oid = i.inhparent join pg_namespace n on n.oid = p.relnamespace "
            "where n.nspname = 'landing' and c.relkind = 'r'").fetchall()}
        assert partitions == {f"{spec.name}__d01" for spec in TABLES}
        logged = conn.execute("select count(*), sum(rows_inserted)::int from landing.load_log").fetchone()
        assert logged == (len(TABLES), 37)


def test_identical_reload_changes_nothing(state_db: str, make_district: MakeDistrict) -> None:
    district = make_district("D01")
    load_ok(district)
    with database.connect() as conn:
        before = landing_checksums(conn)
    stats = load_ok(district)
    assert all(inserted == updated == deleted == 0 for inserted, updated, deleted, _ in stats.values())
    assert stats["attendance"][3] == 4
    with database.connect() as conn:
        after = landing_checksums(conn)
    changed = {table for table in after if after[table] != before[table]}
    assert changed == {"load_batch", "load_log"}  # only the bookkeeping of the second load


def test_update_restamps_only_the_changed_row_and_keeps_its_previous_image(
        state_db: str, make_district: MakeDistrict) -> None:
    district = make_district("D01")
    load_ok(district)
    with database.connect() as conn:
        untouched_before = landing_row(conn, "attendance", "attendance_id", 501)
        changed_before = landing_row(conn, "attendance", "attendance_id", 502)
    with district_conn(district) as source:
        source.execute("update attendance set date = '2026-09-02', present_minutes = 30 where attendance_id = 502")
    stats = load_ok(district)
    assert stats["attendance"] == (0, 1, 0, 3)
    with database.connect() as conn:
        assert landing_row(conn, "attendance", "attendance_id", 501) == untouched_before
        changed_after = landing_row(conn, "attendance", "attendance_id", 502)
        assert changed_after[1] > changed_before[1] and changed_after[2] > changed_before[2]
        old = conn.execute("select old_row from landing.superseded_row where table_name = 'attendance'").fetchone()
        assert old is not None and old[0]["date"] == "2026-09-01" and old[0]["present_minutes"] == 45


def test_deleted_row_is_flagged_and_comes_back_unflagged(state_db: str, make_district: MakeDistrict) -> None:
    district = make_district("D01")
    load_ok(district)
    with district_conn(district) as source:
        saved = source.execute("select * from attendance where attendance_id = 503").fetchone()
        source.execute("delete from attendance where attendance_id = 503")
    assert load_ok(district)["attendance"] == (0, 0, 1, 3)
    with database.connect() as conn:
        deleted, batch_deleted, _ = landing_row(conn, "attendance", "attendance_id", 503)
        assert deleted is True
    assert load_ok(district)["attendance"] == (0, 0, 0, 3)  # a deleted row is flagged once
    with district_conn(district) as source:
        assert saved is not None
        source.execute("insert into attendance values (" + ", ".join(["%s"] * len(saved)) + ")", saved)
    assert load_ok(district)["attendance"] == (0, 1, 0, 3)
    with database.connect() as conn:
        deleted, batch_back, _ = landing_row(conn, "attendance", "attendance_id", 503)
        assert deleted is False and batch_back > batch_deleted
        # The deleted image is kept too: a delete and a return in one window must recompute the old key.
        prior = conn.execute("select old_row from landing.superseded_row where table_name = 'attendance' "
                             "and row_id = 503 and batch_id = %s", (batch_back,)).fetchone()
        assert prior is not None and prior[0]["_deleted"] is True


BAD_INPUTS: list[tuple[str, str, str]] = [
    # (description, SQL applied to the district database, expected fragment of the error)
    ("missing table", "drop table behavior_type", "table behavior_type: table is missing"),
    ("missing column", "alter table period drop column period_minutes", "column period_minutes is missing"),
    ("unparsable date", "alter table day alter column date type text; update day set date = '2026-02-30' "
     "where day_id = 1002", "table day, row day_id=1002, column date: not a valid date: '2026-02-30'"),
    ("unparsable time", "alter table period alter column start_time type text; update period set start_time = "
     "'25:99' where period_id = 212", "table period, row period_id=212, column start_time: not a valid time"),
    ("unparsable number", "alter table attendance alter column present_minutes type text; update attendance "
     "set present_minutes = 'forty' where attendance_id = 502",
     "table attendance, row attendance_id=502, column present_minutes: not a valid integer: 'forty'"),
    ("unparsable boolean", "alter table enrollment alter column no_show type text; update enrollment set "
     "no_show = 'maybe' where enrollment_id = 2",
     "table enrollment, row enrollment_id=2, column no_show: not a valid boolean: 'maybe'"),
    ("unknown status", "update attendance set status = 'Q' where attendance_id = 503",
     "table attendance, row attendance_id=503, column status: unknown code"),
    ("unknown excuse", "update attendance_excuse set excuse = 'Z' where excuse_id = 32",
     "table attendance_excuse, row excuse_id=32, column excuse: unknown code"),
    ("unknown excuse code", "update attendance set excuse_id = 99 where attendance_id = 502",
     "table attendance, row attendance_id=502, column excuse_id: excuse_id 99 has no attendance_excuse row"),
    ("duplicate primary key", "alter table person drop constraint person_pkey; insert into person "
     "select * from person where person_id = 2", "table person, row person_id=2, column person_id: duplicate key"),
    ("duplicate calendar day", "alter table day drop constraint day_calendar_id_date_key; insert into day values "
     "(1009, 10, '2026-09-01', 11, true, true, null, now())", "column calendar_id, date: duplicate key"),
    ("missing parent", "delete from person where person_id = 3",
     "table enrollment, row enrollment_id=3, column person_id: person_id 3 has no person row"),
    ("missing required value", "alter table enrollment alter column start_date drop not null; "
     "update enrollment set start_date = null where enrollment_id = 1",
     "table enrollment, row enrollment_id=1, column start_date: a value is required"),
]


@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in BAD_INPUTS],
                         ids=[d for d, _, _ in BAD_INPUTS])
def test_bad_input_is_named_and_leaves_landing_untouched(
        state_db: str, make_district: MakeDistrict, change: str, expected: str) -> None:
    district = make_district("D01")
    load_ok(district)
    with district_conn(district) as source:
        source.execute("update attendance set comments = 'edited' where attendance_id = 501")  # a pending change
        source.execute(change)
    with database.connect() as conn:
        before = landing_checksums(conn)
    [result] = load_districts([district])
    assert not result.ok
    assert result.error is not None and expected in result.error and result.error.startswith("district D01")
    with database.connect() as conn:
        assert landing_checksums(conn) == before
        failure = conn.execute("select district_code, error from landing.load_failure").fetchone()
        assert failure == ("D01", result.error)


def test_unreachable_district_database_is_reported(state_db: str) -> None:
    district = District("D09", "Nowhere", DistrictSource("url", url="postgresql://nobody@127.0.0.1:1/sis"))
    prepare_warehouse()
    with pytest.raises(DistrictLoadError, match=r"district D09: cannot reach the district database"):
        load_district(district)


def test_failure_midway_through_a_district_rolls_back_every_table(state_db: str, make_district: MakeDistrict) -> None:
    district = make_district("D01")
    load_ok(district)
    with district_conn(district) as source:
        source.execute("update school set name = 'Renamed' where school_id = 1; delete from day where day_id = 1003;"
                       "update attendance set status = 'A' where attendance_id = 502")
    with database.connect(autocommit=True) as conn:
        before = landing_checksums(conn)
        # A fault in the database after school .. period_schedule have been applied (disk full, a killed backend).
        conn.execute("create function landing.fail_midway() returns trigger language plpgsql as "
                     "$$ begin raise exception 'injected failure while writing %', tg_table_name; end $$")
        conn.execute("create trigger fail_midway before update or insert on landing.day__d01 "
                     "for each row execute function landing.fail_midway()")
    [result] = load_districts([district])
    assert not result.ok and result.error is not None and "injected failure while writing day__d01" in result.error
    with database.connect(autocommit=True) as conn:
        conn.execute("drop trigger fail_midway on landing.day__d01")
        conn.execute("drop function landing.fail_midway()")
        assert landing_checksums(conn) == before


def test_one_failing_district_does_not_stop_the_others(
        state_db: str, make_district: MakeDistrict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad, other = make_district("D01"), make_district("D02"), make_district("D03")
    with district_conn(bad) as source:
        source.execute("update attendance set status = 'Q' where attendance_id = 501")
    registry = tmp_path / "registry.yml"
    write_registry(registry, [good, bad, other])
    assert cli_main(["--registry", str(registry), "load"]) == 1
    captured = capsys.readouterr()
    assert "D02: FAILED" in captured.out and "column status: unknown code" in captured.out
    assert "1 of 3 district load(s) failed: D02" in captured.err
    with database.connect() as conn:
        loaded = conn.execute("select district_code, count(*) from landing.attendance group by 1 order by 1").fetchall()
    assert loaded == [("D01", 4), ("D03", 4)]


def data_rows(conn: psycopg.Connection, code: str) -> list[tuple]:
    return conn.execute("select attendance_id, person_id, date, status, excuse, excuse_id, present_minutes, comments "
                        "from landing.attendance where district_code = %s order by 1", (code,)).fetchall()


def test_csv_extract_loads_the_same_rows_as_the_database(
        state_db: str, make_district: MakeDistrict, tmp_path: Path) -> None:
    district = make_district("D01")
    export_csv(district, tmp_path / "extract")
    extract = District("E01", "Extract district", DistrictSource("extract_dir", extract_dir=tmp_path / "extract"))
    load_ok(district)
    load_ok(extract)
    with database.connect() as conn:
        assert data_rows(conn, "E01") == data_rows(conn, "D01") and len(data_rows(conn, "E01")) == 4


def test_csv_bad_date_names_the_line(state_db: str, make_district: MakeDistrict, tmp_path: Path) -> None:
    folder = tmp_path / "extract"
    export_csv(make_district("D01"), folder)
    day_csv = folder / "day.csv"
    day_csv.write_text(day_csv.read_text().replace("2026-09-02", "09/02/2026", 1))
    extract = District("E01", "Extract district", DistrictSource("extract_dir", extract_dir=folder))
    [result] = load_districts([extract])
    assert not result.ok
    assert result.error == ("district E01, table day, line 3, column date: not a valid date: '09/02/2026'")


def test_a_second_load_of_the_same_district_waits_for_the_first(
        state_db: str, make_district: MakeDistrict) -> None:
    import threading

    district = make_district("D01")
    load_ok(district)
    results: list[DistrictLoadResult] = []
    with database.connect() as holder:
        # Stand-in for a load in progress: the same lock a load holds for its whole transaction.
        lock_row(holder, district_lock_name("D01"))
        waiting = threading.Thread(target=lambda: results.extend(load_districts([district])))
        waiting.start()
        waiting.join(timeout=2.0)
        assert waiting.is_alive() and not results  # blocked, not interleaved
        holder.rollback()
    waiting.join(timeout=30)
    assert len(results) == 1 and results[0].ok
