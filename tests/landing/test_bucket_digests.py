"""Bucket digests: a reload lists only the key ranges whose digest differs from landing's, and ends exactly
where a reload that lists every row ends (same landing rows, change stamps, superseded images, load_log
counts and error messages)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from orchestration.districts.contract import TABLES
from orchestration.districts.registry import District
from orchestration.landing import buckets
from orchestration.landing.load import DistrictLoadResult, load_districts
from orchestration.warehouse import database
from tests.support.warehouse import district_conn

MakeDistrict = Callable[..., District]
SPREAD_ROWS = 300  # attendance rows 10097 .. 39100, every 97th key: eight buckets of 4,096 keys
BUCKETED, FULL = "D01", "D02"  # the same district twice: one reloaded through buckets, one listing every row


def spread(district: District) -> District:
    with district_conn(district) as source:
        source.execute("insert into attendance select 10000 + 97 * n, 1, 10, 111, '2026-09-01', 'T', '', null, "
                       "360, null, '2026-09-01 09:00' from generate_series(1, %s) as n", (SPREAD_ROWS,))
    return district


def load(district: District, monkeypatch: pytest.MonkeyPatch, *, bucketed: bool) -> DistrictLoadResult:
    with monkeypatch.context() as patch:
        patch.setattr(buckets, "ENABLED", bucketed)
        [result] = load_districts([district])
    return result


def twins(make_district: MakeDistrict, monkeypatch: pytest.MonkeyPatch) -> list[District]:
    districts = [spread(make_district(BUCKETED)), spread(make_district(FULL))]
    for district in districts:
        assert load(district, monkeypatch, bucketed=True).ok
    return districts


def change(districts: list[District], statement: str) -> None:
    for district in districts:
        with district_conn(district) as source:
            source.execute(statement)


def counts(result: DistrictLoadResult) -> dict[str, tuple[int, ...]]:
    return {t.table: (t.inserted, t.updated, t.deleted, t.unchanged) for t in result.tables}


def listed(result: DistrictLoadResult) -> dict[str, int]:
    return {t.table: t.listed for t in result.tables}


def landing_image(conn: psycopg.Connection, code: str, batch_id: int | None) -> dict[str, list[tuple]]:
    """Every landing row of the district without its district and batch, whether the batch stamped it, and
    the batch's superseded images and load_log counts."""
    image: dict[str, list[tuple]] = {}
    for spec in TABLES:
        image[spec.name] = conn.execute(sql.SQL(
            "select to_jsonb(l) - 'district_code' - '_batch_id' - '_changed_at', _batch_id = %s "
            "from {} l where district_code = %s order by 1::text").format(sql.Identifier("landing", spec.name)),
            (batch_id, code)).fetchall()
    image["superseded_row"] = conn.execute(
        "select table_name, row_id, old_row - 'district_code' - '_batch_id' - '_changed_at' "
        "from landing.superseded_row where batch_id = %s order by 1, 2", (batch_id,)).fetchall()
    image["load_log"] = conn.execute(
        "select table_name, rows_inserted, rows_updated, rows_deleted, rows_unchanged from landing.load_log "
        "where batch_id = %s order by 1", (batch_id,)).fetchall()
    return image


def reload_both(districts: list[District], monkeypatch: pytest.MonkeyPatch) -> DistrictLoadResult:
    """Reload the twins, one through buckets and one listing every row; both end the same; the bucketed result."""
    bucketed = load(districts[0], monkeypatch, bucketed=True)
    full = load(districts[1], monkeypatch, bucketed=False)
    assert bucketed.ok == full.ok
    if not bucketed.ok:
        assert bucketed.error and full.error
        assert bucketed.error.replace(BUCKETED, FULL) == full.error
        return bucketed
    assert counts(bucketed) == counts(full)
    with database.connect() as conn:
        assert landing_image(conn, BUCKETED, bucketed.batch_id) == landing_image(conn, FULL, full.batch_id)
    return bucketed


def test_unchanged_reload_lists_nothing(state_db: str, make_district: MakeDistrict,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    districts = twins(make_district, monkeypatch)
    result = reload_both(districts, monkeypatch)
    assert set(listed(result).values()) == {0}
    assert counts(result)["attendance"] == (0, 0, 0, 4 + SPREAD_ROWS)
    full = load(districts[1], monkeypatch, bucketed=False)
    assert listed(full)["attendance"] == 4 + SPREAD_ROWS  # the full path lists every row


# Each change lands in one or two buckets of eight: only their rows are listed.
CHANGES = {
    "edit": "update attendance set present_minutes = 30 where attendance_id = 10000 + 97 * 50",
    "delete": "delete from attendance where attendance_id = 10000 + 97 * 120",
    "new row in a new bucket": "insert into attendance values (90001, 2, 20, 211, '2026-09-03', 'A', 'E', 31, null, "
                               "null, '2026-09-03 09:00')",
    "key moving between buckets": "update attendance set attendance_id = 70001 where attendance_id = 10000 + 97 * 200",
    "edit of a person (a parent)": "update person set last_name = 'Rivera-Diaz' where person_id = 1",
}


@pytest.mark.parametrize("statement", CHANGES.values(), ids=CHANGES.keys())
def test_a_change_lists_only_its_buckets_and_ends_as_a_full_listing_does(
        state_db: str, make_district: MakeDistrict, monkeypatch: pytest.MonkeyPatch, statement: str) -> None:
    districts = twins(make_district, monkeypatch)
    change(districts, statement)
    result = reload_both(districts, monkeypatch)
    assert result.ok, result.error
    assert sum(listed(result).values()) > 0
    assert listed(result)["attendance"] <= 2 * 43  # at most two buckets of about 4096 / 97 rows
    assert sum(sum(counts(result)[name][:3]) for name in counts(result)) >= 1


def test_a_returning_row_is_found(state_db: str, make_district: MakeDistrict,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    districts = twins(make_district, monkeypatch)
    change(districts, "create table kept as select * from attendance where attendance_id = 10000 + 97 * 33; "
                      "delete from attendance where attendance_id = 10000 + 97 * 33")
    assert counts(reload_both(districts, monkeypatch))["attendance"][2] == 1
    change(districts, "insert into attendance select * from kept")
    result = reload_both(districts, monkeypatch)
    assert counts(result)["attendance"] == (0, 1, 0, 3 + SPREAD_ROWS)  # a returning row is updated, undeleted


def test_a_landing_row_without_hash_makes_its_bucket_listed(state_db: str, make_district: MakeDistrict,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    districts = twins(make_district, monkeypatch)
    with database.connect() as conn:
        conn.execute("update landing.attendance set _row_hash = null where attendance_id = 10000 + 97 * 70")
        conn.commit()
    result = reload_both(districts, monkeypatch)
    assert 0 < listed(result)["attendance"] <= 43
    assert counts(result)["attendance"] == (0, 0, 0, 4 + SPREAD_ROWS)  # its hash is kept again, no stamp
    with database.connect() as conn:
        assert conn.execute("select count(*) from landing.attendance where _row_hash is null").fetchone() == (0,)


REFUSED = {
    "a duplicate key in an unchanged bucket": (
        "alter table attendance drop constraint attendance_pkey; "
        "insert into attendance select * from attendance where attendance_id = 10000 + 97 * 150",
        ["table attendance", "duplicate key"]),
    # Person 1's attendance lies in every bucket; only its enrollment and attendance 501 are removed.
    "a gone parent of rows in unchanged buckets": (
        "delete from enrollment where person_id = 1; delete from attendance where attendance_id = 501; "
        "delete from person where person_id = 1",
        ["person_id 1 has no person row"]),
    # Listed whole (no bucket digests for a text key) and refused as before.
    "a key that is not an integer column in the district": (
        "alter table attendance alter column attendance_id type text; "
        "update attendance set attendance_id = 'A-501' where attendance_id = '501'",
        ["column attendance_id: not a valid integer: 'A-501'"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_source_rows_are_refused_as_before(
        state_db: str, make_district: MakeDistrict, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    statement, expected = REFUSED[case]
    districts = twins(make_district, monkeypatch)
    change(districts, statement)
    result = reload_both(districts, monkeypatch)
    assert not result.ok
    assert result.error is not None and all(text in result.error for text in expected), result.error
