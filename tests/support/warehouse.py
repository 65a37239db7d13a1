"""The warehouse side of the tests: state databases of a test's own, the Warehouse helper over one, and
checksums that show whether a run changed landing.

Every database a helper creates gets a unique name and is dropped afterwards, so tests and engineers
sharing one embedded server never see each other's data.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

from orchestration import settings as project_settings
from orchestration.dbt import runner as dbt_runner
from orchestration.districts.registry import District
from orchestration.landing.load import load_districts
from orchestration.warehouse import database
from orchestration.warehouse.setup import ensure_warehouse

# The benchmark's hand-written statement for att_day_aggregation, run with %(as_of_date)s.
REFERENCE_SQL = (project_settings.PROJECT_ROOT / "benchmarks" / "reference_att_day_aggregation.sql").read_text()


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


@dataclass
class Warehouse:
    """A state database of a test module's own (see `new_warehouse`), with a connection to it.

    `districts` are registry entries whose source databases the real loader reads (`load`); tests that
    write landing themselves (tests.support.districts.load) only `register` their codes. dbt runs and the
    comparisons of att_day_aggregation with the reference statement or a snapshot go through here too.
    """

    database: str
    conn: psycopg.Connection
    districts: dict[str, District] = field(default_factory=dict)

    def load(self, *codes: str) -> None:
        """The real landing load of these districts (every one must succeed)."""
        results = load_districts([self.districts[code] for code in codes])
        assert all(result.ok for result in results), [result.error for result in results]

    def district_db(self, code: str) -> psycopg.Connection:
        return district_conn(self.districts[code])

    def register(self, *codes: str) -> None:
        for code in codes:
            self.conn.execute("insert into landing.district (district_code, name, source) values (%s, %s, 'test') "
                              "on conflict do nothing", (code, f"District {code}"))
        self.conn.commit()

    def dbt(self, *args: str, as_of: dt.date, districts: list[str] | None = None,
            full_refresh: bool = False) -> dbt_runner.DbtRunResult:
        result = dbt_runner.run_dbt(list(args), as_of_date=as_of, districts=districts, full_refresh=full_refresh)
        assert result.success, result.failure_message
        return result

    def build_parents(self, as_of: dt.date) -> None:
        self.dbt("run", "--select", "state", "--exclude", "att_day_aggregation", as_of=as_of)

    def build_all(self, as_of: dt.date) -> None:
        """The parents, then the aggregation, in one dbt run (Check Dependencies)."""
        self.dbt("run", "--select", "state", as_of=as_of)

    def aggregate(self, as_of: dt.date, *, districts: list[str] | None = None,
                  full_refresh: bool = False) -> dbt_runner.DbtRunResult:
        return self.dbt("run", "--select", "att_day_aggregation", as_of=as_of, districts=districts,
                        full_refresh=full_refresh)

    def _compare(self, other: str, where: str, params: dict[str, Any] | None = None) -> tuple[int, int]:
        """Rows of the table missing from `other` (a query), and rows of `other` missing from the table."""
        query = (f"with other as ({other}), "
                 f"aggregation as (select * from state.att_day_aggregation) "
                 f"select (select count(*) from (select * from aggregation where {where} "
                 f"          except all select * from other where {where}) as extra), "
                 f"       (select count(*) from (select * from other where {where} "
                 f"          except all select * from aggregation where {where}) as missing)")
        self.conn.execute("set enable_nestloop = off")
        row = self.conn.execute(query, params).fetchone()
        self.conn.execute("reset enable_nestloop")
        self.conn.commit()
        assert row is not None
        return int(row[0]), int(row[1])

    def differences(self, as_of: dt.date, where: str = "true") -> tuple[int, int]:
        """The table against the reference statement for the as-of date."""
        return self._compare(REFERENCE_SQL, where, {"as_of_date": as_of})

    def assert_equal(self, as_of: dt.date, where: str = "true") -> None:
        assert self.differences(as_of, where) == (0, 0)

    def snapshot(self, name: str) -> None:
        self.conn.execute(sql.SQL("drop table if exists public.{}").format(sql.Identifier(name)))
        self.conn.execute(sql.SQL("create table public.{} as select * from state.att_day_aggregation").format(
            sql.Identifier(name)))
        self.conn.commit()

    def differs_from_snapshot(self, name: str, where: str = "true") -> tuple[int, int]:
        return self._compare(f"select * from public.{sql.Identifier(name).as_string(self.conn)}", where)

    def recorded(self, model: str = "att_day_aggregation") -> dict[str, tuple[int | None, dt.date | None]]:
        rows = self.conn.execute("select district_code, landing_batch_id, as_of_date from state.model_build "
                                 "where model_name = %s", (model,)).fetchall()
        self.conn.commit()
        return {code: (batch, as_of) for code, batch, as_of in rows}


AnyWarehouse = TypeVar("AnyWarehouse", bound=Warehouse)


@contextmanager
def new_warehouse(prefix: str, kind: type[AnyWarehouse] = Warehouse,  # type: ignore[assignment]
                  districts: dict[str, District] | None = None) -> Iterator[AnyWarehouse]:
    """A Warehouse (or subclass) over a state database of its own; dropped afterwards."""
    with state_database(prefix) as name, database.connect() as conn:
        yield kind(name, conn, {} if districts is None else districts)
