"""Tool rights enforced by the database: a Read-only user can query but cannot load."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from psycopg import sql

from orchestration.districts.registry import District
from orchestration.landing.load import load_districts
from orchestration.warehouse import database
from orchestration.warehouse import rights as tool_rights
from tests.support.warehouse import landing_checksums, unique_name

ANALYST_PASSWORD = "analyst password"


@pytest.fixture
def analyst(state_db: str) -> Iterator[str]:
    name = unique_name("analyst")
    with database.connect(autocommit=True) as conn:
        # Every login of the server needs a password (scram-sha-256 in pg_hba.conf).
        conn.execute(sql.SQL("create role {} login password {}").format(sql.Identifier(name),
                                                                        sql.Literal(ANALYST_PASSWORD)))
    yield name
    with database.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


@contextmanager
def connected_as(user: str) -> Iterator[None]:
    """Every connection in the block logs in as `user` (environment settings, as in production)."""
    settings = database.ensure_server()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("PGHOST", settings.host), ("PGPORT", str(settings.port)),
                            ("PGDATABASE", settings.dbname), ("PGUSER", user),
                            ("PGPASSWORD", ANALYST_PASSWORD)):
            patch.setenv(name, value)
        yield


def test_read_only_user_cannot_load_and_landing_is_unchanged(
        analyst: str, make_district: Callable[..., District]) -> None:
    district = make_district("D01")
    [first] = load_districts([district])
    assert first.ok
    tool_rights.grant(analyst, "read")
    with database.connect() as conn:
        before = landing_checksums(conn)
        assert tool_rights.rights_of(conn, analyst) == {"read"}
    refused = pytest.raises(tool_rights.PermissionDenied, match=f"{analyst} may not run a load; it needs the Write")
    with connected_as(analyst), refused:
        load_districts([district])
    with database.connect() as conn:
        assert landing_checksums(conn) == before


def test_write_user_can_load(analyst: str, make_district: Callable[..., District]) -> None:
    district = make_district("D01")
    assert district.source.database is not None
    with database.connect(district.source.database, autocommit=True) as source:  # the district lets it read
        source.execute(sql.SQL("grant select on all tables in schema public to {}").format(sql.Identifier(analyst)))
    tool_rights.grant(analyst, "write")
    with connected_as(analyst):
        [result] = load_districts([district])
    assert result.ok, result.error
    with database.connect() as conn:
        assert conn.execute("select count(*) from landing.attendance").fetchone() == (4,)
