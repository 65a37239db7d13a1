"""Shared fixtures: every test session uses its own embedded PostgreSQL, every test its own databases.

The embedded server of the test session lives in `<ATTENDANCE_HOME or .local>/test-server` on its own port,
so running the tests never touches the demo warehouse.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from orchestration.districts.registry import District, DistrictSource
from orchestration.warehouse import database
from orchestration.warehouse.setup import ensure_warehouse
from tests.district_samples import create_district_database


def pytest_configure(config: pytest.Config) -> None:
    if not any(os.environ.get(name) for name in (database.URL_VARIABLE, *database.PG_VARIABLES)):
        base = Path(os.environ.get("ATTENDANCE_HOME", Path(__file__).resolve().parent.parent / ".local"))
        os.environ["ATTENDANCE_HOME"] = str(base / "test-server")
        os.environ.setdefault("ATTENDANCE_TEST_PORT", "54339")
        os.environ["ATTENDANCE_EMBEDDED_PORT"] = os.environ["ATTENDANCE_TEST_PORT"]


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextmanager
def state_database(prefix: str) -> Iterator[str]:
    """A state database of its own, warehouse set up, used by every `database.connect()` and dbt run
    inside the block; dropped afterwards. For module-scoped fixtures (the `state_db` fixture is per test)."""
    name = unique_name(prefix)
    server = database.ensure_server()
    database.ensure_database(name, server)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ATTENDANCE_STATE_DATABASE", name)
            with database.connect() as conn:
                ensure_warehouse(conn)
                conn.commit()
            yield name
    finally:
        database.drop_database(name, server)


@pytest.fixture
def state_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty state database for one test, used by every `database.connect()` in it."""
    name = unique_name("test_state")
    settings = database.ensure_server()
    database.ensure_database(name, settings)
    monkeypatch.setenv("ATTENDANCE_STATE_DATABASE", name)
    monkeypatch.setenv("ATTENDANCE_REGISTRY", str(tmp_path / "districts.yml"))
    yield name
    database.drop_database(name, settings)


@pytest.fixture
def make_district() -> Iterator[Callable[..., District]]:
    """Creates small district databases (see district_samples) and drops them afterwards."""
    created: list[str] = []

    def factory(code: str, **options: object) -> District:
        name = unique_name(f"district_{code.lower()}")
        created.append(name)
        create_district_database(name, **options)  # type: ignore[arg-type]
        return District(code=code, name=f"District {code}", source=DistrictSource("database", database=name))

    yield factory
    for name in created:
        database.drop_database(name)


def district_conn(district: District) -> psycopg.Connection:
    assert district.source.database is not None
    return database.connect(district.source.database, autocommit=True)


def landing_checksums(conn: psycopg.Connection) -> dict[str, str]:
    """md5 of every landing table's ordered rows (the failure log excepted: failures are meant to add to it)."""
    tables = [row[0] for row in conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'landing' and c.relkind in ('r', 'p') and c.relname <> 'load_failure' "
        "and not c.relispartition order by 1").fetchall()]
    sums = {}
    for table in tables:
        row = conn.execute(sql.SQL("select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
                                   "from landing.{} t").format(sql.Identifier(table))).fetchone()
        assert row is not None
        sums[table] = f"{row[0]}:{row[1]}"
    return sums
