"""The dbt State Edition models on a real PostgreSQL: district-by-district replacement, the district
selection, lineage (Check Dependencies), grants, and the dbt argument list of orchestration.dbt.runner.

One database for the module: districts D01, D02 and D04 from the sample district database, D03 with
empty tables, all loaded through the real landing loader.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date

import psycopg
import pytest
import yaml
from psycopg import sql

from orchestration import settings
from orchestration.dbt import runner as dbt_runner
from orchestration.districts.contract import TABLES
from orchestration.districts.registry import District, DistrictSource, RegistryError
from orchestration.landing.load import load_districts
from orchestration.warehouse import database
from orchestration.warehouse.setup import ensure_warehouse
from tests.support.districts import create_district_database
from tests.support.warehouse import Warehouse, new_warehouse, unique_name

MakeDistrict = Callable[..., District]
STATE_TABLES = ("district", *(spec.name for spec in TABLES))
CODES = ("D01", "D02", "D03", "D04")


# --- dbt_args: the pure part of the runner ---------------------------------------------------------

def test_dbt_args_puts_the_project_options_and_vars_after_the_subcommand() -> None:
    args = dbt_runner.dbt_args(["build", "--select", "+attendance"], districts=["D01", "D03", "D01"],
                               as_of_date=date(2026, 9, 2), full_refresh=True)
    assert args[:3] == ["build", "--select", "+attendance"]
    assert args[args.index("--project-dir") + 1].endswith("dbt_project")
    assert args[args.index("--profiles-dir") + 1].endswith("profiles")
    assert json.loads(args[args.index("--vars") + 1]) == {"districts": ["D01", "D03"], "as_of_date": "2026-09-02",
                                                          "state_time_zone": dbt_runner.state_time_zone()}
    assert args[-1] == "--full-refresh"


def test_dbt_args_without_selection_passes_only_the_time_zone() -> None:
    args = dbt_runner.dbt_args(["run"], districts=[], target_path=None)
    assert json.loads(args[args.index("--vars") + 1]) == {"state_time_zone": dbt_runner.state_time_zone()}
    assert "--full-refresh" not in args and "--target-path" not in args


def test_dbt_args_refuses_bad_codes_and_a_missing_subcommand() -> None:
    with pytest.raises(RegistryError, match="not a valid district code"):
        dbt_runner.dbt_args(["build"], districts=["D01'; drop table x"])
    with pytest.raises(ValueError, match="subcommand"):
        dbt_runner.dbt_args(["--select", "x"])


def test_the_weekly_resync_passes_state_replace() -> None:
    from orchestration.dagster_defs.dbt_assets import STATE_REPLACE_JOBS, dbt_build_args
    from orchestration.dagster_defs.jobs import WEEKLY_RESYNC

    assert WEEKLY_RESYNC in STATE_REPLACE_JOBS
    args = dbt_build_args(districts=["D01"], state_replace=True)
    assert json.loads(args[args.index("--vars") + 1])["state_replace"] is True
    args = dbt_build_args(districts=["D01"])
    assert "state_replace" not in json.loads(args[args.index("--vars") + 1])


# --- the warehouse -------------------------------------------------------------------------------------

def build(*args: str, districts: list[str] | None = None, full_refresh: bool = False) -> dbt_runner.DbtRunResult:
    result = dbt_runner.run_dbt(list(args) or ["build"], districts=districts, full_refresh=full_refresh,
                                as_of_date=date(2026, 9, 2))
    assert result.success, result.failure_message
    return result


@pytest.fixture(scope="module")
def warehouse() -> Iterator[Warehouse]:
    sources: dict[str, District] = {}
    try:
        with new_warehouse("test_dbt_state", districts=sources) as warehouse:
            for code in CODES:
                source = unique_name(f"district_{code.lower()}")
                sources[code] = District(code, f"District {code}", DistrictSource("database", database=source))
                create_district_database(source, rows=code != "D03")
            warehouse.load(*CODES)
            yield warehouse
    finally:
        for district in sources.values():
            database.drop_database(str(district.source.database))


@pytest.fixture(scope="module")
def built(warehouse: Warehouse) -> Iterator[dbt_runner.DbtRunResult]:
    """The state models built for every district, once, with all their data tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTENDANCE_STATE_DATABASE", warehouse.database)
        yield build("build", "--select", "staging", "state", "--exclude", "att_day_aggregation")


@pytest.fixture
def state(warehouse: Warehouse, built: dbt_runner.DbtRunResult,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[psycopg.Connection]:
    monkeypatch.setenv("ATTENDANCE_STATE_DATABASE", warehouse.database)
    with database.connect(autocommit=True) as conn:
        yield conn


def checksums(conn: psycopg.Connection) -> dict[tuple[str, str], str]:
    """(table, district) -> row count and md5 of the ordered rows, for every state table."""
    sums: dict[tuple[str, str], str] = {}
    for table in STATE_TABLES:
        for code, count, digest in conn.execute(sql.SQL(
                "select district_code, count(*), md5(string_agg(t::text, '|' order by t::text)) "
                "from state.{} t group by district_code").format(sql.Identifier(table))).fetchall():
            sums[(table, code)] = f"{count}:{digest}"
    return sums


def model_builds(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[int | None, object]]:
    return {(model, code): (batch, built_at) for model, code, batch, built_at in conn.execute(
        "select model_name, district_code, landing_batch_id, built_at from state.model_build").fetchall()}


# --- tests ---------------------------------------------------------------------------------------------

def test_full_build_passes_every_data_test(built: dbt_runner.DbtRunResult) -> None:
    statuses = {node.unique_id: node.status for node in built.nodes}
    tests = {uid: status for uid, status in statuses.items() if uid.startswith("test.")}
    # The key uniqueness tests are unique indexes instead, the not_null tests NOT NULL constraints.
    assert len(tests) > 20
    warned = {uid for uid, status in tests.items() if status == "warn"}
    # The sample's row 503 names period 212 on a day that follows another period schedule.
    assert warned == {"test.attendance_sync.attendance_rows_outside_counted_periods"}
    assert all(status in ("pass", "warn") for status in tests.values()), tests
    assert all(statuses[f"model.attendance_sync.{table}"] == "success" for table in STATE_TABLES)


def test_state_tables_hold_live_landing_rows_keyed_by_district(state: psycopg.Connection) -> None:
    counts = dict(state.execute("select district_code, count(*) from state.attendance group by 1").fetchall())
    assert counts == {"D01": 4, "D02": 4, "D04": 4}
    # An empty excuse is unknown (null); the excuse code id is kept.
    assert state.execute("select excuse, excuse_id from state.attendance where district_code = 'D01' "
                         "and attendance_id = 503").fetchone() == (None, None)
    assert state.execute("select state_id from state.person where district_code = 'D02' and person_id = 3"
                         ).fetchone() == (None,)
    registry = state.execute("select district_code from state.district order by 1").fetchall()
    assert [code for (code,) in registry] == list(CODES)


def test_empty_district_has_no_rows(state: psycopg.Connection) -> None:
    assert not [key for key in checksums(state) if key[1] == "D03" and key[0] != "district"]


def test_each_build_records_the_landing_horizon_it_read(state: psycopg.Connection) -> None:
    horizons = dict(state.execute("select district_code, max(batch_id) from landing.load_batch group by 1").fetchall())
    builds = model_builds(state)
    assert {key: batch for key, (batch, _) in builds.items()} == {
        (table, code): horizons[code] for table in STATE_TABLES for code in CODES}


def test_two_district_run_replaces_exactly_those_districts(warehouse: Warehouse, state: psycopg.Connection) -> None:
    before = checksums(state)
    builds_before = model_builds(state)
    # Change D01 (an update), D02 (a delete) and D04 (an update that this run must not pick up).
    with warehouse.district_db("D01") as district:
        district.execute("update person set last_name = 'Rivera-Lopez' where person_id = 1")
    with warehouse.district_db("D02") as district:
        district.execute("delete from attendance where attendance_id = 504")
    with warehouse.district_db("D04") as district:
        district.execute("update school set name = 'Renamed' where school_id = 1")
    warehouse.load("D01", "D02", "D04")

    build("build", "--select", "staging", "state", "--exclude", "att_day_aggregation", districts=["D01", "D02"])
    after = checksums(state)
    untouched = {key for key in before if key[1] in ("D03", "D04")}
    assert untouched and all(after.get(key) == before[key] for key in untouched)
    assert after[("person", "D01")] != before[("person", "D01")]
    assert after[("attendance", "D02")].startswith("3:")
    builds_after = model_builds(state)
    assert all(builds_after[(t, "D04")] == builds_before[(t, "D04")] for t in STATE_TABLES)
    assert all(builds_after[(t, "D01")][1] > builds_before[(t, "D01")][1] for t in STATE_TABLES)

    # The same rows as a build of every district produces.
    build("run", "--select", "state", "--exclude", "att_day_aggregation")
    full = checksums(state)
    for key, value in after.items():
        if key[1] in ("D01", "D02"):
            assert full[key] == value, key
    assert full[("school", "D04")] != before[("school", "D04")]


def test_full_refresh_cannot_drop_other_districts(state: psycopg.Connection) -> None:
    before = checksums(state)
    build("run", "--select", "school", districts=["D01"], full_refresh=True)
    assert checksums(state) == before


def test_unknown_district_is_refused_and_nothing_changes(state: psycopg.Connection) -> None:
    before = checksums(state)
    result = dbt_runner.run_dbt(["build", "--select", "state"], districts=["D01", "D99"])
    assert not result.success
    assert "D99 not in the district registry" in result.failure_message
    assert checksums(state) == before


def test_district_whose_landing_emptied_ends_with_no_rows(warehouse: Warehouse, state: psycopg.Connection) -> None:
    with warehouse.district_db("D04") as district:
        for spec in reversed(TABLES):
            district.execute(sql.SQL("delete from {}").format(sql.Identifier(spec.name)))
    warehouse.load("D04")
    before = checksums(state)
    build("run", "--select", "state", "--exclude", "att_day_aggregation", districts=["D04"])
    after = checksums(state)
    assert {key for key in after if key[1] == "D04"} == {("district", "D04")}
    assert all(after[key] == value for key, value in before.items() if key[1] != "D04")


STATE_RUN = ("run", "--select", "state", "--exclude", "att_day_aggregation")


def row_versions(conn: psycopg.Connection) -> dict[str, dict[tuple[str, int], str]]:
    """Per state table with a landing key: (district, key) -> the row's physical version (ctid and xmin),
    which every write of the row changes."""
    versions = {}
    for spec in TABLES:
        rows = conn.execute(sql.SQL("select district_code, {}, ctid::text || '/' || xmin::text from state.{}").format(
            sql.Identifier(spec.primary_key), sql.Identifier(spec.name))).fetchall()
        versions[spec.name] = {(code, key): version for code, key, version in rows}
    return versions


def changes_recorded(conn: psycopg.Connection) -> dict[tuple[str, str], object]:
    return {(model, code): changed for model, code, changed in conn.execute(
        "select model_name, district_code, changed_at from state.model_build where model_name <> 'district'")}


def test_a_run_with_nothing_new_writes_no_row(state: psycopg.Connection) -> None:
    build(*STATE_RUN)  # whatever earlier tests loaded is incorporated
    before, changes_before, builds_before = row_versions(state), changes_recorded(state), model_builds(state)
    build(*STATE_RUN)
    assert row_versions(state) == before
    assert changes_recorded(state) == changes_before
    builds_after = model_builds(state)
    assert all(builds_after[key][0] == batch and builds_after[key][1] > built_at
               for key, (batch, built_at) in builds_before.items())


def test_a_load_rewrites_only_the_rows_its_batch_changed(warehouse: Warehouse, state: psycopg.Connection) -> None:
    build(*STATE_RUN)
    before = row_versions(state)
    with warehouse.district_db("D01") as district:
        district.execute("update attendance set status = 'T', present_minutes = 30 where attendance_id = 503")
        district.execute("create temporary table copied as select * from attendance where attendance_id = 503")
        district.execute("update copied set attendance_id = 9503")
        district.execute("insert into attendance select * from copied")  # a new key (or a key change)
        row = district.execute("delete from attendance where attendance_id = (select max(attendance_id) "
                               "from attendance where attendance_id not in (503, 9503)) returning attendance_id"
                               ).fetchone()
        district.execute("update person set first_name = 'Changed' where person_id = 1")
    assert row is not None
    deleted = row[0]
    warehouse.load("D01")
    build(*STATE_RUN)
    after = row_versions(state)
    rewritten = {(table, key) for table, rows in after.items() for key, version in rows.items()
                 if before[table].get(key) != version}
    gone = {(table, key) for table, rows in before.items() for key in rows if key not in after[table]}
    assert rewritten == {("attendance", ("D01", 503)), ("attendance", ("D01", 9503)), ("person", ("D01", 1))}
    assert gone == {("attendance", ("D01", deleted))}
    assert state.execute("select status, present_minutes from state.attendance where district_code = 'D01' "
                         "and attendance_id = 9503").fetchone() == ("T", 30)
    # The weekly resync's replace (the var state_replace) finds the same rows, and rewrites them all.
    incremental = checksums(state)
    result = dbt_runner.run_dbt(list(STATE_RUN), as_of_date=date(2026, 9, 2), state_replace=True)
    assert result.success, result.failure_message
    assert checksums(state) == incremental
    replaced = row_versions(state)
    assert all(replaced["attendance"][key] != version for key, version in after["attendance"].items())


def test_readers_may_select_every_state_table(state: psycopg.Connection) -> None:
    for table in (*STATE_TABLES, "model_build"):
        granted = state.execute("select has_table_privilege('attendance_read', %s, 'select')",
                                (f"state.{table}",)).fetchone()
        assert granted == (True,), table
        owner = state.execute("select tableowner from pg_tables where schemaname = 'state' and tablename = %s",
                              (table,)).fetchone()
        assert owner == ("attendance_write",), table


def test_state_tables_have_indexes_led_by_district_code(state: psycopg.Connection) -> None:
    for spec in TABLES:
        indexes = [row[0] for row in state.execute(
            "select indexdef from pg_indexes where schemaname = 'state' and tablename = %s", (spec.name,))]
        assert any(f"(district_code, {spec.primary_key})" in index and "UNIQUE" in index for index in indexes)


def ancestors(table: str) -> set[str]:
    """The contract's transitive parents of a table, plus the district every root table belongs to."""
    by_name = {spec.name: spec for spec in TABLES}
    found: set[str] = set()
    stack = [table]
    while stack:
        parents = by_name[stack.pop()].parents or ["district"]
        for parent in parents:
            if parent not in found:
                found.add(parent)
                if parent != "district":
                    stack.append(parent)
    return found


def test_lineage_is_the_object_hierarchy() -> None:
    """`--select +attendance` is "resync attendance with Check Dependencies": exactly its ancestors."""
    result = dbt_runner.run_dbt(["ls", "--select", "+attendance", "--resource-type", "model",
                                 "--output", "name", "--quiet"])
    assert result.success, result.failure_message
    listed = set(result.stdout.split())
    expected = {"attendance", *ancestors("attendance")}
    assert expected == {"attendance", "person", "calendar", "period", "attendance_excuse", "school",
                        "school_year", "period_schedule", "district"}
    assert listed == expected | {f"stg_landing__{name}" for name in expected}

    # Every state model depends on exactly its contract parents (and its ephemeral staging model).
    result = dbt_runner.run_dbt(["ls", "--select", "state", "--exclude", "att_day_aggregation",
                                 "--resource-type", "model", "--output", "json",
                                 "--output-keys", "name", "depends_on", "--quiet"])
    assert result.success, result.failure_message
    for line in result.stdout.splitlines():
        node = json.loads(line)
        parents = {uid.split(".")[-1] for uid in node["depends_on"]["nodes"]}
        spec = next((s for s in TABLES if s.name == node["name"]), None)
        contract = set(spec.parents or ["district"]) if spec else set()
        assert parents == contract | {f"stg_landing__{node['name']}"}, node["name"]


def test_docs_generate_works(warehouse: Warehouse, built: dbt_runner.DbtRunResult,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTENDANCE_STATE_DATABASE", warehouse.database)
    result = dbt_runner.run_dbt(["docs", "generate"])
    assert result.success, result.failure_message


def test_check_dependencies_resync_on_an_empty_state(state_db: str, make_district: MakeDistrict) -> None:
    """`build --select +attendance` on a new state builds and tests attendance and its ancestors only."""
    with database.connect() as conn:
        ensure_warehouse(conn)
        conn.commit()
    [loaded] = load_districts([make_district("D01")])
    assert loaded.ok, loaded.error
    result = dbt_runner.run_dbt(["build", "--select", "+attendance"])
    assert result.success, result.failure_message
    models = {node.unique_id.split(".")[-1] for node in result.nodes if node.unique_id.startswith("model.")}
    expected = {"attendance", *ancestors("attendance")}
    assert models == expected  # staging models are ephemeral: compiled into these, never run on their own
    with database.connect() as conn:
        assert conn.execute("select to_regclass('state.day')").fetchone() == (None,)
        assert conn.execute("select count(*) from state.attendance").fetchone() == (4,)


def test_a_duplicate_key_is_refused_by_the_table_itself(state: psycopg.Connection) -> None:
    """The unique indexes are what guarantee the keys (no uniqueness data test repeats them)."""
    for table in STATE_TABLES:
        with pytest.raises(psycopg.errors.UniqueViolation):
            state.execute(sql.SQL("insert into state.{0} select * from state.{0} limit 1").format(
                sql.Identifier(table)))


def declared_not_null() -> dict[str, list[str]]:
    """Model -> the columns its YAML declares not_null (column constraints), for the state tables."""
    declared: dict[str, list[str]] = {}
    for path in (settings.DBT_PROJECT_DIR / "models" / "state").glob("*.yml"):
        for model in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("models") or []:
            declared[model["name"]] = [column["name"] for column in model.get("columns") or []
                                       if {"type": "not_null"} in (column.get("constraints") or [])]
    return declared


def test_declared_not_null_columns_are_constraints_of_the_tables(state: psycopg.Connection) -> None:
    """The column_constraints() post-hook makes every declared not_null a NOT NULL of the table: PostgreSQL
    refuses the NULL itself (no not_null data test scans the table after the build)."""
    declared = declared_not_null()
    assert set(STATE_TABLES) <= set(declared)
    for table in STATE_TABLES:
        assert declared[table], f"{table} declares no not_null column"
        not_null = {name for (name,) in state.execute(
            "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 and attnotnull",
            (f"state.{table}",)).fetchall()}
        assert set(declared[table]) <= not_null, (table, set(declared[table]) - not_null)
        column = declared[table][-1]
        with pytest.raises(psycopg.errors.NotNullViolation, match=column):
            state.execute(sql.SQL("update state.{} set {} = null").format(sql.Identifier(table),
                                                                           sql.Identifier(column)))


def test_a_null_in_a_not_null_column_fails_the_build_and_changes_nothing(
        warehouse: Warehouse, state: psycopg.Connection) -> None:
    """A NULL reaching a declared not_null column (here: landing's own NOT NULL lifted behind the loader's
    back) stops the model's build with PostgreSQL's message naming the column; the table stays as it was."""
    before = checksums(state)
    try:
        state.execute("alter table landing.school alter column name drop not null")
        state.execute("update landing.school set name = null where district_code = 'D01'")
        result = dbt_runner.run_dbt(["run", "--select", "school"], districts=["D01"], state_replace=True,
                                    as_of_date=date(2026, 9, 2))
        assert not result.success
        assert 'null value in column "name"' in result.failure_message, result.failure_message
        assert checksums(state) == before
    finally:
        state.execute("update landing.school as l set name = s.name from state.school as s "
                      "where l.district_code = s.district_code and l.school_id = s.school_id")
        state.execute("alter table landing.school alter column name set not null")


def test_a_child_without_its_parent_fails_its_relationship_test_once_per_missing_key(
        state: psycopg.Connection) -> None:
    """relationships_composite looks up the child's distinct keys: a missing parent is one failure, however
    many child rows name it."""
    rows = state.execute("select count(*) from state.attendance where district_code = 'D01' and person_id = 1"
                         ).fetchone()
    assert rows is not None and rows[0] >= 1
    try:
        state.execute("delete from state.person where district_code = 'D01' and person_id = 1")
        result = dbt_runner.run_dbt(["test", "--select", "attendance,test_name:relationships_composite"],
                                    as_of_date=date(2026, 9, 2))
        failed = {node.unique_id.split(".")[2]: node.failures for node in result.nodes if node.status == "fail"}
        assert failed == {
            "relationships_composite_attendance_district_code__person_id__district_code__person_id__ref_person_": 1}
    finally:
        restored = dbt_runner.run_dbt(["run", "--select", "person"], districts=["D01"], state_replace=True,
                                      as_of_date=date(2026, 9, 2))
        assert restored.success, restored.failure_message
    assert state.execute("select count(*) from state.person where district_code = 'D01' and person_id = 1"
                         ).fetchone() == (1,)
