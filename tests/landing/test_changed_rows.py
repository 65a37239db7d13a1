"""Reloads that find changes by row hash: unchanged rows are neither moved nor re-checked, changed ones are
checked as strictly as ever; districts load two at a time; superseded images are kept until incorporated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from orchestration.cli import main as cli_main
from orchestration.districts.registry import District, DistrictSource, write_registry
from orchestration.landing.load import DistrictLoadResult, load_districts, prepare_warehouse
from orchestration.landing.retention import prune_superseded_rows
from orchestration.warehouse import database
from tests.support.districts import export_csv
from tests.support.warehouse import district_conn, landing_checksums

MakeDistrict = Callable[..., District]
EXTRA_ROWS = 300  # unchanged attendance rows around the one that changes


def loaded(district: District) -> DistrictLoadResult:
    [result] = load_districts([district])
    assert result.ok, result.error
    return result


def staged(result: DistrictLoadResult) -> dict[str, int]:
    return {table.table: table.staged for table in result.tables}


def with_many_rows(district: District) -> District:
    with district_conn(district) as source:
        source.execute("insert into attendance select 10000 + n, 1, 10, 111, '2026-09-01', 'T', '', null, 360, "
                       "null, '2026-09-01 09:00' from generate_series(1, %s) as n", (EXTRA_ROWS,))
    return district


def row_versions(conn: psycopg.Connection, code: str = "D01") -> list[tuple]:
    """Every landing attendance row's physical version: an update, even to equal values, changes it."""
    return conn.execute("select attendance_id, xmin::text, ctid::text from landing.attendance "
                        "where district_code = %s order by 1", (code,)).fetchall()


def test_identical_reload_writes_no_row_and_stages_none(state_db: str, make_district: MakeDistrict) -> None:
    district = with_many_rows(make_district("D01"))
    first = loaded(district)
    assert staged(first)["attendance"] == 4 + EXTRA_ROWS  # a first load checks every row
    with database.connect() as conn:
        versions = row_versions(conn)
        hashes = conn.execute("select count(*), count(_row_hash) from landing.attendance").fetchone()
        assert hashes == (4 + EXTRA_ROWS, 4 + EXTRA_ROWS)
    again = loaded(district)
    assert set(staged(again).values()) == {0}
    assert {t.table: t.unchanged for t in again.tables}["attendance"] == 4 + EXTRA_ROWS
    with database.connect() as conn:
        assert row_versions(conn) == versions
        superseded = conn.execute("select count(*) from landing.superseded_row").fetchone()
        assert superseded == (0,)


def test_one_changed_row_among_many_is_found_checked_and_stamped(state_db: str, make_district: MakeDistrict) -> None:
    district = with_many_rows(make_district("D01"))
    loaded(district)
    with database.connect() as conn:
        versions = dict((row[0], row[1:]) for row in row_versions(conn))
    with district_conn(district) as source:
        source.execute("update attendance set present_minutes = 30 where attendance_id = 10007")
    result = loaded(district)
    assert staged(result)["attendance"] == 1
    stats = {t.table: (t.inserted, t.updated, t.deleted, t.unchanged) for t in result.tables}
    assert stats["attendance"] == (0, 1, 0, 3 + EXTRA_ROWS)
    with database.connect() as conn:
        after = dict((row[0], row[1:]) for row in row_versions(conn))
        assert [key for key in after if after[key] != versions[key]] == [10007]
        stamp = conn.execute("select _batch_id from landing.attendance where attendance_id = 10007").fetchone()
        assert stamp == (result.batch_id,)
        old = conn.execute("select old_row from landing.superseded_row where row_id = 10007").fetchone()
        assert old is not None and old[0]["present_minutes"] == 360 and "_row_hash" not in old[0]


@pytest.mark.parametrize(("change", "expected"), [
    ("update attendance set status = 'Q' where attendance_id = 10150",
     "district D01, table attendance, row attendance_id=10150, column status: unknown code (allowed: A, T, E): 'Q'"),
    ("update attendance set excuse_id = 99 where attendance_id = 10150",
     "district D01, table attendance, row attendance_id=10150, column excuse_id: excuse_id 99 has no "
     "attendance_excuse row with excuse_id=99"),
    # The parent is gone, its child unchanged: the child is still reported.
    ("delete from enrollment where person_id = 3; delete from attendance where person_id = 3; "
     "delete from person where person_id = 3; "
     "alter table enrollment drop constraint enrollment_person_id_fkey; insert into enrollment values "
     "(4, 3, 20, '10', '2026-08-24', null, 'P', false, '2026-08-01 08:00')",
     "district D01, table enrollment, row enrollment_id=4, column person_id: person_id 3 has no person row "
     "with person_id=3"),
    # A new day on the date of an unchanged one: the unchanged row takes part in the duplicate check (the
    # message names both rows by the first key column's value, as a full load always has).
    ("alter table day drop constraint day_calendar_id_date_key; insert into day values "
     "(1009, 10, '2026-09-01', 11, true, true, null, now())",
     "district D01, table day, row day_id=10, column calendar_id, date: duplicate key (calendar_id=10, "
     "date=2026-09-01), also at row day_id=10"),
])
def test_a_bad_changed_row_fails_with_the_same_message(
        state_db: str, make_district: MakeDistrict, change: str, expected: str) -> None:
    district = with_many_rows(make_district("D01"))
    loaded(district)
    with district_conn(district) as source:
        for statement in change.split("; "):
            if "fkey" in statement:
                constraint = source.execute(
                    "select conname from pg_constraint where conrelid = 'enrollment'::regclass and contype = 'f'"
                ).fetchall()
                for (name,) in constraint:
                    source.execute(f"alter table enrollment drop constraint {name}")
                continue
            source.execute(statement)
    with database.connect() as conn:
        before = landing_checksums(conn)
    [result] = load_districts([district])
    assert not result.ok and result.error == expected
    with database.connect() as conn:
        assert landing_checksums(conn) == before


def test_rows_loaded_before_hashes_existed_keep_their_stamps(state_db: str, make_district: MakeDistrict) -> None:
    district = make_district("D01")
    loaded(district)
    with database.connect(autocommit=True) as conn:
        conn.execute("alter table landing.attendance drop column _row_hash")  # a warehouse from before
        stamps = conn.execute("select attendance_id, _batch_id, _changed_at from landing.attendance "
                              "order by 1").fetchall()
    upgraded = loaded(district)
    assert staged(upgraded)["attendance"] == 4  # checked once, to record their hashes
    assert {t.table: t.updated for t in upgraded.tables}["attendance"] == 0
    with database.connect() as conn:
        assert conn.execute("select attendance_id, _batch_id, _changed_at from landing.attendance "
                            "order by 1").fetchall() == stamps
        assert conn.execute("select count(_row_hash) from landing.attendance").fetchone() == (4,)
    assert staged(loaded(district))["attendance"] == 0


def test_csv_reload_stages_only_the_changed_line_and_names_a_bad_one(
        state_db: str, make_district: MakeDistrict, tmp_path: Path) -> None:
    folder = tmp_path / "extract"
    export_csv(make_district("D01"), folder)
    extract = District("E01", "Extract district", DistrictSource("extract_dir", extract_dir=folder))
    loaded(extract)
    assert set(staged(loaded(extract)).values()) == {0}
    attendance = folder / "attendance.csv"
    attendance.write_text(attendance.read_text().replace("late bus", "late train"))
    changed = loaded(extract)
    assert staged(changed)["attendance"] == 1 and {t.table: t.updated for t in changed.tables}["attendance"] == 1
    day_csv = folder / "day.csv"
    day_csv.write_text(day_csv.read_text().replace("2026-09-02", "09/02/2026", 1))
    [result] = load_districts([extract])
    assert result.error == "district E01, table day, line 3, column date: not a valid date: '09/02/2026'"


def test_two_districts_load_at_once_and_a_failure_leaves_only_its_own_landing(
        state_db: str, make_district: MakeDistrict) -> None:
    good, bad, third = make_district("D01"), make_district("D02"), make_district("D03")
    assert [r.district_code for r in load_districts([good, bad, third])] == ["D01", "D02", "D03"]
    with database.connect() as conn:
        batches = conn.execute("select district_code, started_at, committed_at from landing.load_batch "
                               "order by batch_id").fetchall()
        # Batch ids in district order, as a serial run draws them, whichever load started first.
        assert [batch[0] for batch in batches] == ["D01", "D02", "D03"]
        # The first two loads overlapped: each started before the other committed.
        (_, start_a, end_a), (_, start_b, end_b) = [b for b in batches if b[0] in ("D01", "D02")]
        assert start_a < end_b and start_b < end_a
        before = conn.execute("select md5(string_agg(t::text, '|' order by t::text)) from landing.attendance t "
                              "where district_code = 'D02'").fetchone()
    with district_conn(good) as source:
        source.execute("update attendance set comments = 'edited' where attendance_id = 501")
    with district_conn(bad) as source:
        source.execute("update attendance set status = 'Q' where attendance_id = 503")
    results = load_districts([bad, good, third])
    assert [(r.district_code, r.ok) for r in results] == [("D02", False), ("D01", True), ("D03", True)]
    with database.connect() as conn:
        after = conn.execute("select md5(string_agg(t::text, '|' order by t::text)) from landing.attendance t "
                             "where district_code = 'D02'").fetchone()
        assert after == before
        edited = conn.execute("select comments from landing.attendance where district_code = 'D01' "
                              "and attendance_id = 501").fetchone()
        assert edited == ("edited",)


def test_superseded_images_are_pruned_once_every_model_incorporated_their_batch(
        state_db: str, make_district: MakeDistrict) -> None:
    prepare_warehouse()
    with database.connect() as conn:
        conn.execute("set role attendance_write")  # as dbt's hook creates it
        conn.execute("create table state.model_build (model_name text, district_code text, landing_batch_id bigint, "
                     "built_at timestamptz not null default now(), as_of_date date, "
                     "primary key (model_name, district_code))")
        conn.execute("insert into state.model_build (model_name, district_code, landing_batch_id) values "
                     "('attendance', 'D01', 5), ('att_day_aggregation', 'D01', 3), "
                     "('attendance', 'D02', 9), ('att_day_aggregation', 'D02', null)")
        conn.execute("insert into landing.superseded_row (batch_id, district_code, table_name, row_id, old_row) "
                     "select batch, code, 'attendance', 1, '{}' from unnest(array[2, 3, 4, 6]) as batch, "
                     "unnest(array['D01', 'D02', 'D03']) as code")
        assert prune_superseded_rows(conn) == 2
        kept = conn.execute("select district_code, array_agg(batch_id order by batch_id) from landing.superseded_row "
                            "group by 1 order by 1").fetchall()
        conn.execute("update state.model_build set landing_batch_id = 6 where district_code = 'D01'")
        conn.commit()
    # D01: batches up to 3 are in every model; D02 has a model without a horizon; D03 was never built.
    assert kept == [("D01", [4, 6]), ("D02", [2, 3, 4, 6]), ("D03", [2, 3, 4, 6])]
    loaded(make_district("D01"))  # a district's load prunes its own images, in its transaction
    with database.connect() as conn:
        remaining = conn.execute("select district_code, count(*) from landing.superseded_row group by 1 order by 1"
                                 ).fetchall()
        assert remaining == [("D02", 4), ("D03", 4)]


def test_a_malformed_worker_count_is_refused_before_anything_loads(
        state_db: str, make_district: MakeDistrict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    registry = tmp_path / "registry.yml"
    write_registry(registry, [make_district("D01")])
    monkeypatch.setenv("ATTENDANCE_LOAD_WORKERS", "two")
    assert cli_main(["--registry", str(registry), "load"]) == 2
    assert "environment variable ATTENDANCE_LOAD_WORKERS='two' is not a number of districts to load at once " \
           "between 1 and 64" in capsys.readouterr().err
    with database.connect() as conn:
        assert conn.execute("select count(*) from landing.load_batch").fetchone() == (0,)
