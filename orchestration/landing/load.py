"""Landing loads: copy each district's tables into `landing`, one district at a time, atomically.

A district's load is one transaction. Rows are streamed with COPY into temporary tables, validated in
SQL (types, codes, keys, parents), then diffed against the district's landing partition: new rows are
inserted, changed rows updated (their previous image kept in landing.superseded_row), vanished rows
flagged deleted, unchanged rows left alone so their change stamp stays. Any problem rolls the whole
district back and is reported with district, table, row and column; other districts still load.
A load that would flag too many of a table's live rows deleted is refused before anything is applied
(guard.py); a district database is read from one snapshot (orchestration/districts/sources.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from orchestration.districts.contract import TABLES, Column, Table
from orchestration.districts.registry import District, RegistryError
from orchestration.districts.sources import DistrictSource, SourceError, open_source
from orchestration.landing.guard import (
    Allowance,
    DeleteGuard,
    MassDeleteRefused,
    TableDeletes,
    ensure_override_table,
    global_max_share,
    min_rows,
    record_allowance,
)
from orchestration.warehouse import database
from orchestration.warehouse.rights import district_scope, require_write
from orchestration.warehouse.run_origin import current_origin
from orchestration.warehouse.setup import WRITE_ROLE, ensure_district_partition, ensure_partition, ensure_warehouse
from orchestration.warehouse.writer_lock import district_lock_name, lock_row
from orchestration.warehouse.writer_sessions import mark_writer_session


class StateDatabaseUnavailable(Exception):
    """The state database cannot be reached at all: nothing was loaded."""


class DistrictLoadError(Exception):
    def __init__(self, district: str, message: str, *, table: str | None = None, row: str | None = None,
                 column: str | None = None) -> None:
        self.district, self.table, self.row, self.column, self.detail = district, table, row, column, message
        where = [f"district {district}"]
        where += [f"table {table}"] if table else []
        where += [row] if row else []
        where += [f"column {column}"] if column else []
        super().__init__(f"{', '.join(where)}: {message}")


@dataclass
class TableLoadStats:
    table: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    duration_s: float = 0.0


@dataclass
class DistrictLoadResult:
    district_code: str
    ok: bool
    batch_id: int | None = None
    tables: list[TableLoadStats] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0

    def describe(self) -> str:
        if not self.ok:
            return f"{self.district_code}: FAILED, landing unchanged: {self.error}"
        totals = {kind: sum(getattr(t, kind) for t in self.tables)
                  for kind in ("inserted", "updated", "deleted", "unchanged")}
        counts = ", ".join(f"{value} {kind}" for kind, value in totals.items())
        return f"{self.district_code}: loaded (batch {self.batch_id}) in {self.duration_s:.1f}s: {counts}"


def _raw(spec: Table) -> sql.Identifier:
    return sql.Identifier(f"raw_{spec.name}")


def _new(spec: Table) -> sql.Identifier:
    return sql.Identifier(f"new_{spec.name}")


def _ids(names: list[str], prefix: str | None = None) -> sql.Composable:
    if prefix:
        return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


# A local date and time, as the contract has them: no offset, no zone name.
_LOCAL_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$"
# The same followed by an offset (+05:00, +0500, -05, Z) or a zone name (UTC, America/Denver): PostgreSQL's
# timestamp input accepts these and silently drops them, which would shift the time.
_ZONED_TIMESTAMP = (r"^\d{4}-\d{2}-\d{2}[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*"
                    r"(z|[+-]\d{1,2}(:?\d{2}){0,2}|[a-z][a-z0-9_/+-]*)$")


def _problems(column: Column) -> list[tuple[sql.Composable, str]]:
    """SQL conditions that are true when a raw text value breaks the contract, with their message."""
    ident = sql.Identifier(column.name)
    checks: list[tuple[sql.Composable, str]] = []
    if not column.nullable:
        checks.append((sql.SQL("{} is null").format(ident), "a value is required but the field is empty"))
    if column.type == "timestamp":
        checks.append((sql.SQL("{} ~* {}").format(ident, sql.Literal(_ZONED_TIMESTAMP)),
                       "a timestamp with a time zone offset; the contract's timestamps are local times "
                       "without an offset"))
    if column.type != "text":
        # PostgreSQL also reads 09/02/2026 as a date (by DateStyle); the contract says ISO, so demand it.
        iso = {"date": r"^\d{4}-\d{2}-\d{2}$", "timestamp": _LOCAL_TIMESTAMP}.get(column.type)
        shape = sql.SQL(" or {} !~ {}").format(ident, sql.Literal(iso)) if iso else sql.SQL("")
        checks.append((sql.SQL("{} is not null and (not pg_input_is_valid({}, {}){})").format(
            ident, ident, sql.Literal(column.type), shape), f"not a valid {column.type}"))
    if column.accepted:
        allowed = sql.SQL(", ").join(sql.Literal(value) for value in column.accepted if value)
        # Where an empty code is allowed (excuse: unknown), only non-empty values are checked.
        template = "coalesce({}, '') <> '' and {} not in ({})" if "" in column.accepted else \
            "{} is not null and {} not in ({})"
        condition = sql.SQL(template).format(ident, ident, allowed)
        shown = ", ".join(v or "empty" for v in column.accepted)
        checks.append((condition, f"unknown code (allowed: {shown})"))
    return checks


class _DistrictLoad:
    """One district's load inside one transaction on `conn`."""

    def __init__(self, conn: psycopg.Connection, district: District, source: DistrictSource,
                 guard: DeleteGuard | None = None, origin: str | None = None) -> None:
        self.conn, self.district, self.source = conn, district, source
        self.origin = origin or current_origin()  # who loads: recorded with the batch (run_origin.py)
        self.code = district.code
        self.guard = guard or DeleteGuard.for_district(district, None)
        self.district_level = False  # loading with a district-level Write right (run() decides)

    def fail(self, message: str, **where: str | None) -> DistrictLoadError:
        return DistrictLoadError(self.code, message, **where)

    def _row(self, spec: Table, row_number: int, key: str | None) -> str:
        return self.source.describe_row(spec, row_number, key)

    def stage(self, spec: Table) -> int:
        """COPY the source rows into raw_<table> (text) and check every value; return the row count."""
        raw = _raw(spec)
        columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(n)) for n in spec.column_names)
        self.conn.execute(sql.SQL(
            "create temp table {} (_row bigint generated always as identity, {}) on commit drop").format(raw, columns))
        try:
            self.source.copy_table(spec, raw, self.conn)
        except SourceError as error:
            raise self.fail(str(error), table=spec.name, column=error.column) from None
        checks = [(condition, column.name, message) for column in spec.columns
                  for condition, message in _problems(column)]
        case = sql.SQL(" ").join(sql.SQL("when {} then {}").format(cond, sql.Literal(i))
                                 for i, (cond, _, _) in enumerate(checks))
        bad = self.conn.execute(sql.SQL(
            "select _row, {pk}, case {case} end from {raw} where {any} order by _row limit 1").format(
                pk=sql.Identifier(spec.primary_key), case=case, raw=raw,
                any=sql.SQL(" or ").join(cond for cond, _, _ in checks))).fetchone()
        if bad:
            row_number, key, index = bad
            _, column_name, message = checks[index]
            value = self.conn.execute(sql.SQL("select {} from {} where _row = %s").format(
                sql.Identifier(column_name), raw), (row_number,)).fetchone()
            shown = "empty" if value is None or value[0] is None else repr(value[0])
            raise self.fail(f"{message}: {shown}", table=spec.name, row=self._row(spec, row_number, key),
                            column=column_name)
        self._type(spec)
        return self._check_keys(spec)

    def _type(self, spec: Table) -> None:
        casts = sql.SQL(", ").join(
            sql.SQL("{}::{} as {}").format(sql.Identifier(c.name), sql.SQL(c.type), sql.Identifier(c.name))
            if c.type != "text" else sql.SQL("coalesce({}, '') as {}").format(sql.Identifier(c.name),
                                                                             sql.Identifier(c.name))
            if c.accepted and "" in c.accepted else sql.Identifier(c.name)
            for c in spec.columns)
        self.conn.execute(sql.SQL("create temp table {} on commit drop as select _row, {} from {}").format(
            _new(spec), casts, _raw(spec)))
        self.conn.execute(sql.SQL("create index on {} ({})").format(_new(spec), sql.Identifier(spec.primary_key)))
        self.conn.execute(sql.SQL("analyze {}").format(_new(spec)))

    def _check_keys(self, spec: Table) -> int:
        for key_columns in [(spec.primary_key,), *spec.unique]:
            duplicate = self.conn.execute(sql.SQL(
                "select {cols}, min(_row), max(_row) from {new} group by {cols} having count(*) > 1 "
                "order by min(_row) limit 1").format(cols=_ids(list(key_columns)), new=_new(spec))).fetchone()
            if duplicate:
                *values, first, second = duplicate
                shown = ", ".join(f"{c}={v}" for c, v in zip(key_columns, values, strict=True))
                raise self.fail(
                    f"duplicate key ({shown}), also at {self._row(spec, first, str(values[0]))}",
                    table=spec.name, row=self._row(spec, second, str(values[0])), column=", ".join(key_columns))
        count = self.conn.execute(sql.SQL("select count(*) from {}").format(_new(spec))).fetchone()
        return int(count[0]) if count else 0

    def check_parents(self, spec: Table) -> None:
        for fk in spec.foreign_keys:
            parent = next(t for t in TABLES if t.name == fk.parent)
            orphan = self.conn.execute(sql.SQL(
                "select c._row, c.{pk}, c.{col} from {child} c where c.{col} is not null and not exists "
                "(select 1 from {parent} p where p.{pcol} = c.{col}) order by c._row limit 1").format(
                    pk=sql.Identifier(spec.primary_key), col=sql.Identifier(fk.column), child=_new(spec),
                    parent=_new(parent), pcol=sql.Identifier(fk.parent_column))).fetchone()
            if orphan:
                row_number, key, value = orphan
                raise self.fail(f"{fk.column} {value} has no {fk.parent} row with {fk.parent_column}={value}",
                                table=spec.name, row=self._row(spec, row_number, str(key)), column=fk.column)

    def pending_deletes(self, spec: Table) -> TableDeletes:
        """The district's live landing rows of the table, and how many of them the load would flag deleted."""
        row = self.conn.execute(sql.SQL(
            "select count(*), count(*) filter (where not exists (select 1 from {new} n where n.{pk} = l.{pk})) "
            "from {target} l where l.district_code = %s and not l._deleted").format(
                new=_new(spec), pk=sql.Identifier(spec.primary_key), target=sql.Identifier("landing", spec.name)),
            (self.code,)).fetchone()
        assert row is not None
        return TableDeletes(spec.name, live=int(row[0]), deleted=int(row[1]))

    def guard_deletes(self, batch_id: int) -> None:
        """Refuse the load if it would delete too much of a table, before any table is changed."""
        allowances: list[Allowance] = []
        for spec in TABLES:
            try:
                allowance = self.guard.check(self.pending_deletes(spec))
            except MassDeleteRefused as refused:
                raise self.fail(str(refused), table=spec.name) from None
            if allowance is not None:
                allowances.append(allowance)
        for allowance in allowances:
            record_allowance(self.conn, batch_id, self.code, allowance)

    def apply(self, spec: Table, batch_id: int, staged: int) -> TableLoadStats:
        """Diff new_<table> against the district's landing partition."""
        (ensure_district_partition if self.district_level else ensure_partition)(self.conn, spec.name, self.code)
        target = sql.Identifier("landing", spec.name)
        names, pk = spec.column_names, sql.Identifier(spec.primary_key)
        params = {"district": self.code, "batch": batch_id, "table": spec.name}
        differs = sql.SQL("({}) is distinct from ({})").format(_ids(names, "l"), _ids(names, "n"))
        match = sql.SQL("l.district_code = %(district)s and l.{pk} = n.{pk}").format(pk=pk)
        self.conn.execute(sql.SQL(
            "insert into landing.superseded_row (batch_id, district_code, table_name, row_id, old_row) "
            "select %(batch)s, %(district)s, %(table)s, l.{pk}, to_jsonb(l) from {target} l join {new} n on {match} "
            "where (l._deleted or {differs})").format(
                pk=pk, target=target, new=_new(spec), match=match, differs=differs), params)
        updated = self.conn.execute(sql.SQL(
            "update {target} l set ({cols}) = ({new_cols}), _batch_id = %(batch)s, _changed_at = now(), "
            "_deleted = false from {new} n where {match} and (l._deleted or {differs})").format(
                target=target, cols=_ids(names), new_cols=_ids(names, "n"), new=_new(spec), match=match,
                differs=differs), params).rowcount
        inserted = self.conn.execute(sql.SQL(
            "insert into {target} (district_code, {cols}, _batch_id, _changed_at, _deleted) "
            "select %(district)s, {new_cols}, %(batch)s, now(), false from {new} n where not exists "
            "(select 1 from {target} l where {match})").format(
                target=target, cols=_ids(names), new_cols=_ids(names, "n"), new=_new(spec), match=match),
            params).rowcount
        deleted = self.conn.execute(sql.SQL(
            "update {target} l set _deleted = true, _batch_id = %(batch)s, _changed_at = now() "
            "where l.district_code = %(district)s and not l._deleted and not exists "
            "(select 1 from {new} n where n.{pk} = l.{pk})").format(target=target, new=_new(spec), pk=pk),
            params).rowcount
        return TableLoadStats(spec.name, inserted=inserted, updated=updated, deleted=deleted,
                              unchanged=staged - inserted - updated)

    def run(self) -> DistrictLoadResult:
        started = time.perf_counter()
        conn = self.conn
        scope = district_scope(conn, "write")
        if scope:
            # A district-level writer loads as itself: PostgreSQL row security lets it write only the landing
            # rows of its granted districts (warehouse_setup.ensure_district_access).
            if self.code not in scope:
                raise self.fail(f"permission denied: {conn.info.user} may not load district {self.code}; its "
                                f"district-level Write right covers {', '.join(scope)} only")
            self.district_level = True
        else:
            try:
                conn.execute(sql.SQL("set local role {}").format(sql.Identifier(WRITE_ROLE)))
            except psycopg.errors.InsufficientPrivilege:
                raise self.fail(
                    f"permission denied: loading needs the Write right (membership in role {WRITE_ROLE})") from None
        # One writer per district: a second load of the same district waits here for the first to commit.
        lock_row(conn, district_lock_name(self.code))
        batch_row = conn.execute(
            "insert into landing.load_batch (district_code, started_at, origin) values (%s, now(), %s) "
            "returning batch_id", (self.code, self.origin)).fetchone()
        assert batch_row is not None
        batch_id = int(batch_row[0])
        timings: dict[str, float] = {}
        staged: dict[str, int] = {}
        for spec in TABLES:
            t0 = time.perf_counter()
            staged[spec.name] = self.stage(spec)
            timings[spec.name] = time.perf_counter() - t0
        for spec in TABLES:
            t0 = time.perf_counter()
            self.check_parents(spec)
            timings[spec.name] += time.perf_counter() - t0
        self.guard_deletes(batch_id)
        result = DistrictLoadResult(self.code, ok=True, batch_id=batch_id)
        for spec in TABLES:
            t0 = time.perf_counter()
            stats = self.apply(spec, batch_id, staged[spec.name])
            stats.duration_s = timings[spec.name] + time.perf_counter() - t0
            result.tables.append(stats)
            conn.execute(
                "insert into landing.load_log (batch_id, district_code, table_name, rows_inserted, rows_updated, "
                "rows_deleted, rows_unchanged, duration_ms) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                (batch_id, self.code, spec.name, stats.inserted, stats.updated, stats.deleted, stats.unchanged,
                 round(stats.duration_s * 1000, 1)))
        conn.execute("update landing.load_batch set committed_at = clock_timestamp() where batch_id = %s", (batch_id,))
        result.duration_s = time.perf_counter() - started
        return result


def record_loaded_district(conn: psycopg.Connection, district: District) -> None:
    """Inside a district's load transaction: the district exists in the state from its first committed load."""
    conn.execute(
        "insert into landing.district (district_code, name, source, in_registry) values (%s, %s, %s, true) "
        "on conflict (district_code) do update set name = excluded.name, source = excluded.source, in_registry = true "
        "where (landing.district.name, landing.district.source, landing.district.in_registry) "
        "is distinct from (excluded.name, excluded.source, true)",
        (district.code, district.name, district.source.describe()))


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def _database_error(conn: psycopg.Connection, error: psycopg.Error) -> str:
    if conn.closed:
        return f"lost the connection to the state database during the load: {_reason(error)}"
    return f"database error: {str(error).strip()}"


def load_district(district: District, *, conn: psycopg.Connection | None = None,
                  allow_mass_delete: str | None = None, origin: str | None = None) -> DistrictLoadResult:
    """Load one district in one transaction; raise DistrictLoadError with landing left as it was.

    `allow_mass_delete` names the operator's explicit override of the mass-delete guard (e.g. the CLI
    flag), recorded with every deletion above the limit it lets through; None: the limits apply.
    `origin` is recorded with the batch (run_origin.py; None: this process's origin).
    """
    guard = DeleteGuard.for_district(district, allow_mass_delete)
    own = conn is None
    conn = conn or database.connect()
    try:
        if own:
            mark_writer_session(conn)
        try:
            source = open_source(district)
        except SourceError as error:
            raise DistrictLoadError(district.code, str(error), table=error.table, column=error.column) from None
        except RegistryError as error:  # e.g. its url_env/password_env variable is unset: this district only
            raise DistrictLoadError(district.code, str(error).removeprefix(f"district {district.code}: ")) from None
        try:
            with conn.transaction():
                result = _DistrictLoad(conn, district, source, guard, origin).run()
                record_loaded_district(conn, district)
                return result
        except psycopg.Error as error:
            raise DistrictLoadError(district.code, _database_error(conn, error)) from error
        finally:
            source.close()
    finally:
        if own:
            conn.close()


def prepare_warehouse() -> None:
    """Create what is missing, refusing up front a user without the Write right."""
    with database.connect() as conn:
        with conn.transaction():
            scope = district_scope(conn, "write")
        if scope:
            # A district-level writer cannot create what is missing (a state-level writer did that); its
            # districts enter landing.district with their loads, the loads of others are refused one by one.
            return
        try:
            with conn.transaction():
                ensure_warehouse(conn)
        except psycopg.errors.InsufficientPrivilege:
            require_write(conn, "run a load")  # names the missing right when that is the cause
            raise
        require_write(conn, "run a load")
        with conn.transaction():
            ensure_override_table(conn)


def _record_failure(conn: psycopg.Connection, district_code: str, error: str, origin: str | None = None) -> None:
    try:
        with conn.transaction():
            conn.execute("insert into landing.load_failure (district_code, error, origin) values (%s, %s, %s)",
                         (district_code, error, origin or current_origin()))
    except psycopg.errors.InsufficientPrivilege:
        pass  # the failure is still reported to the caller; a user without Write cannot log it
    except psycopg.OperationalError:
        pass  # the state database is gone; the failure is still reported to the caller


def _connect_state() -> psycopg.Connection:
    """A loader connection to the state database, marked as a writer session (writer_sessions)."""
    conn = database.connect()
    mark_writer_session(conn)
    return conn


def _reconnect_state() -> psycopg.Connection | None:
    try:
        return _connect_state()
    except psycopg.OperationalError:
        return None


def load_districts(districts: list[District], *, allow_mass_delete: str | None = None,
                   origin: str | None = None) -> list[DistrictLoadResult]:
    """Load each district in turn; a district's failure is recorded and does not stop the others.

    Raises StateDatabaseUnavailable when the state database cannot be reached before any load; a server
    lost midway fails the district being loaded and every later one that cannot reconnect.
    """
    global_max_share(), min_rows()  # a malformed guard setting is refused before anything is written
    try:
        prepare_warehouse()
        conn: psycopg.Connection | None = _connect_state()
    except psycopg.OperationalError as error:
        raise StateDatabaseUnavailable(f"cannot reach the state database: {_reason(error)}") from None
    results: list[DistrictLoadResult] = []
    try:
        for district in districts:
            started = time.perf_counter()
            if conn is None or conn.closed:
                conn = _reconnect_state()
            try:
                if conn is None:
                    raise DistrictLoadError(district.code, "not loaded: the state database cannot be reached")
                results.append(load_district(district, conn=conn, allow_mass_delete=allow_mass_delete, origin=origin))
            except DistrictLoadError as error:
                results.append(DistrictLoadResult(district.code, ok=False, error=str(error),
                                                  duration_s=time.perf_counter() - started))
                if conn is not None:
                    _record_failure(conn, district.code, str(error), origin)
    finally:
        if conn is not None:
            conn.close()
    return results
