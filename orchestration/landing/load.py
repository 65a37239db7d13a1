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

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from orchestration.districts.contract import TABLES, Column, Table
from orchestration.districts.registry import District, RegistryError
from orchestration.districts.sources import DistrictSource, SourceError, open_source, row_text_hash
from orchestration.landing.buckets import account_unlisted, listed_landing_rows, plan_listing
from orchestration.landing.changes import (
    FETCH_BY_KEY_MAX_SHARE,
    TableChanges,
    add_children_of_gone_parents,
    add_unique_partners,
    candidate_keys,
    candidate_rows,
    compare_with_landing,
    create_change_tables,
    create_listing,
    gone_after_full_staging,
    gone_keys,
    has_duplicate_keys,
    landing_has_rows,
    listing_from_file,
    number_fetched_rows,
    temp,
)
from orchestration.landing.guard import (
    Allowance,
    DeleteGuard,
    GuardSettingError,
    MassDeleteRefused,
    TableDeletes,
    ensure_override_table,
    global_max_share,
    min_rows,
    record_allowance,
)
from orchestration.landing.retention import prune_superseded_rows
from orchestration.warehouse import database
from orchestration.warehouse.rights import district_scope, require_write
from orchestration.warehouse.run_origin import current_origin
from orchestration.warehouse.setup import (
    WRITE_ROLE,
    ensure_district_partition,
    ensure_partition,
    ensure_warehouse,
    partition_name,
)
from orchestration.warehouse.writer_lock import district_lock_name, lock_row
from orchestration.warehouse.writer_sessions import mark_writer_session

LOAD_WORK_MEM = "256MB"
LOAD_WORKERS_VARIABLE = "ATTENDANCE_LOAD_WORKERS"
DEFAULT_LOAD_WORKERS = 2


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
    staged: int = 0  # rows copied in full, checked and typed: new and changed ones (all on a first load)
    listed: int = 0  # source rows whose key and hash were compared with landing (none when a digest matched)


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
                 guard: DeleteGuard | None = None, batch_id: int | None = None,
                 origin: str | None = None) -> None:
        self.conn, self.district, self.source = conn, district, source
        self.reserved_batch_id = batch_id
        self.origin = origin or current_origin()  # who loads: recorded with the batch (run_origin.py)
        self.code = district.code
        self.guard = guard or DeleteGuard.for_district(district, None)
        self.district_level = False  # loading with a district-level Write right (run() decides)
        self.changes: dict[str, TableChanges] = {}
        self.missing_partitions: set[str] = set()
        self.create_at_apply = False

    def fail(self, message: str, **where: str | None) -> DistrictLoadError:
        return DistrictLoadError(self.code, message, **where)

    def _row(self, spec: Table, row_number: int, key: str | None) -> str:
        return self.source.describe_row(spec, row_number, key)

    def stage(self, spec: Table) -> int:
        """Stage the table's new and changed rows (every row on a first load) in new_<table>, checking every
        staged value and key; return the number of source rows (changes.py)."""
        changes = self.changes[spec.name] = TableChanges(spec)
        # A missing partition is not read through its parent: that would lock the parent (_ensure_partitions).
        changes.landing_empty = spec.name in self.missing_partitions or not landing_has_rows(
            self.conn, spec, self.code)
        raw = _raw(spec)
        try:
            if changes.landing_empty:
                self._create_raw(spec, raw)
                self.source.copy_table(spec, raw, self.conn)
            else:
                self._stage_changes(spec, changes, raw)
        except SourceError as error:
            raise self.fail(str(error), table=spec.name, column=error.column) from None
        if changes.partial and not changes.candidates:
            return changes.listed  # nothing new or changed: nothing to check, type or apply
        self._check_values(spec, raw)
        self._type(spec, index=not changes.partial)
        if changes.partial:
            add_unique_partners(self.conn, spec, self.code, _new(spec))
        staged = changes.staged = self._check_keys(spec)
        if not changes.partial:
            gone_after_full_staging(self.conn, spec, self.code, _new(spec), changes)
            return staged
        return changes.listed

    def _staged(self, spec: Table) -> bool:
        """Whether new_<table> exists: every table but one whose reload found nothing new or changed."""
        changes = self.changes[spec.name]
        return not changes.partial or changes.candidates > 0

    def _create_raw(self, spec: Table, name: sql.Identifier) -> None:
        columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(n)) for n in spec.column_names)
        self.conn.execute(sql.SQL(
            "create temp table {} (_row bigint generated always as identity, {}) on commit drop").format(name, columns))

    def _stage_changes(self, spec: Table, changes: TableChanges, raw: sql.Identifier) -> None:
        """List the source's keys and hashes (of the key ranges whose bucket digest differs, buckets.py),
        compare them with landing, and copy the candidates into raw."""
        names = _ids(spec.column_names)
        file_table: sql.Identifier | None = temp("file", spec)
        gone_parents = {name: other.spec for name, other in self.changes.items() if other.gone}
        plan = plan_listing(self.conn, self.source, spec, self.code, gone_parents)
        if plan is not None and not plan.ranges:  # every bucket equal: nothing new, changed or gone
            changes.partial, changes.listed, changes.live = True, plan.unlisted, plan.live
            return
        seen = create_listing(self.conn, max((other.in_listing for other in self.changes.values()), default=0))
        if not self.source.copy_row_hashes(spec, seen, self.conn, plan.ranges if plan else None):
            assert file_table is not None
            self._create_raw(spec, file_table)
            self.source.copy_table(spec, file_table, self.conn)
            listing_from_file(self.conn, spec, file_table)
            if has_duplicate_keys(self.conn, spec):  # staged whole: the key check names the duplicates
                self.conn.execute(sql.SQL("alter table {} rename to {}").format(file_table, raw))
                return
        elif not self.source.key_is_unique(spec) and has_duplicate_keys(self.conn, spec):
            self._create_raw(spec, raw)
            self.source.copy_table(spec, raw, self.conn)
            return
        else:
            file_table = None
        compare_with_landing(self.conn, spec, self.code, changes,
                             listed_landing_rows(spec, self.code, plan) if plan else None)
        if plan:
            account_unlisted(changes, plan)
        add_children_of_gone_parents(self.conn, spec, self.code, gone_parents, changes)
        if file_table is not None:
            changes.partial = True
            if changes.candidates:
                self._create_raw(spec, raw)
                self.conn.execute(sql.SQL(
                    "insert into {raw} (_row, {cols}) overriding system value select f._row, {fcols} from {file} f "
                    "where f._row in {candidates}").format(
                    raw=raw, cols=names, fcols=_ids(spec.column_names, "f"), file=file_table,
                    candidates=candidate_rows(spec)))
            return
        keys = candidate_keys(self.conn, spec) if changes.candidates else []
        if keys is None or len(keys) > FETCH_BY_KEY_MAX_SHARE * changes.listed:
            self._create_raw(spec, raw)
            self.source.copy_table(spec, raw, self.conn)
            return
        changes.partial = True
        if keys:
            fetched = temp("fetched", spec)
            self._create_raw(spec, fetched)
            self.source.copy_rows_by_key(spec, fetched, self.conn, keys)
            self._create_raw(spec, raw)
            number_fetched_rows(self.conn, spec, fetched, raw)

    def _check_values(self, spec: Table, raw: sql.Identifier) -> None:
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

    def _type(self, spec: Table, *, index: bool = True) -> None:
        casts = sql.SQL(", ").join(
            sql.SQL("{}::{} as {}").format(sql.Identifier(c.name), sql.SQL(c.type), sql.Identifier(c.name))
            if c.type != "text" else sql.SQL("coalesce({}, '') as {}").format(sql.Identifier(c.name),
                                                                             sql.Identifier(c.name))
            if c.accepted and "" in c.accepted else sql.Identifier(c.name)
            for c in spec.columns)
        # The row's hash from its text as the source gave it, kept in landing for the next load (changes.py).
        self.conn.execute(sql.SQL("create temp table {} on commit drop as select _row, {}, {}::uuid as _hash from {}"
                                  ).format(_new(spec), casts, row_text_hash(_ids(spec.column_names)), _raw(spec)))
        if index:  # a whole table; a reload's few changed rows need neither index nor statistics
            self.conn.execute(sql.SQL("create index on {} ({})").format(_new(spec), sql.Identifier(spec.primary_key)))
            if not self.changes[spec.name].landing_empty:  # a first load joins it with no landing rows
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
        if not self._staged(spec):
            return  # no staged row; unchanged rows whose parent is gone were made candidates (changes.py)
        for fk in spec.foreign_keys:
            parent = next(t for t in TABLES if t.name == fk.parent)
            found = []
            if self._staged(parent):
                found.append(sql.SQL("exists (select 1 from {parent} p where p.{pcol} = c.{col})").format(
                    parent=_new(parent), pcol=sql.Identifier(fk.parent_column), col=sql.Identifier(fk.column)))
            if self.changes[parent.name].partial:
                # A partly staged parent table also has its unchanged rows: the live landing rows not gone.
                found.append(sql.SQL(
                    "exists (select 1 from {landing} l where l.district_code = {code} and l.{pcol} = c.{col} "
                    "and not l._deleted and l.{ppk} not in {gone})").format(
                    landing=sql.Identifier("landing", parent.name), code=sql.Literal(self.code),
                    pcol=sql.Identifier(fk.parent_column), col=sql.Identifier(fk.column), gone=gone_keys(parent),
                    ppk=sql.Identifier(parent.primary_key)))
            orphan = self.conn.execute(sql.SQL(
                "select c._row, c.{pk}, c.{col} from {child} c where c.{col} is not null and not ({found}) "
                "order by c._row limit 1").format(
                    pk=sql.Identifier(spec.primary_key), col=sql.Identifier(fk.column), child=_new(spec),
                    found=sql.SQL(" or ").join(found) if found else sql.SQL("false"))).fetchone()
            if orphan:
                row_number, key, value = orphan
                raise self.fail(f"{fk.column} {value} has no {fk.parent} row with {fk.parent_column}={value}",
                                table=spec.name, row=self._row(spec, row_number, str(key)), column=fk.column)

    def pending_deletes(self, spec: Table) -> TableDeletes:
        """The district's live landing rows of the table, and how many of them the load would flag deleted."""
        changes = self.changes[spec.name]
        return TableDeletes(spec.name, live=changes.live, deleted=changes.gone)

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
        """Apply new_<table> (the staged rows) and gone_<table> to the district's landing partition."""
        if self.create_at_apply:
            (ensure_district_partition if self.district_level else ensure_partition)(self.conn, spec.name, self.code)
        target = sql.Identifier("landing", spec.name)
        names, pk = spec.column_names, sql.Identifier(spec.primary_key)
        params = {"district": self.code, "batch": batch_id, "table": spec.name}
        if not self._staged(spec):  # nothing new or changed: only gone keys to flag
            return TableLoadStats(spec.name, deleted=self._flag_gone(spec, batch_id), unchanged=staged)
        if self.changes[spec.name].landing_empty:  # a first load: nothing to compare with
            inserted = self.conn.execute(sql.SQL(
                "insert into {target} (district_code, {cols}, _batch_id, _changed_at, _deleted, _row_hash) "
                "select %(district)s, {new_cols}, %(batch)s, now(), false, n._hash from {new} n").format(
                    target=target, cols=_ids(names), new_cols=_ids(names, "n"), new=_new(spec)), params).rowcount
            return TableLoadStats(spec.name, inserted=inserted, unchanged=staged - inserted)
        differs = sql.SQL("({}) is distinct from ({})").format(_ids(names, "l"), _ids(names, "n"))
        match = sql.SQL("l.district_code = %(district)s and l.{pk} = n.{pk}").format(pk=pk)
        self.conn.execute(sql.SQL(
            "insert into landing.superseded_row (batch_id, district_code, table_name, row_id, old_row) "
            "select %(batch)s, %(district)s, %(table)s, l.{pk}, to_jsonb(l) - '_row_hash' from {target} l "
            "join {new} n on {match} where (l._deleted or {differs})").format(
                pk=pk, target=target, new=_new(spec), match=match, differs=differs), params)
        updated = self.conn.execute(sql.SQL(
            "update {target} l set ({cols}) = ({new_cols}), _batch_id = %(batch)s, _changed_at = now(), "
            "_deleted = false, _row_hash = n._hash from {new} n where {match} and (l._deleted or {differs})").format(
                target=target, cols=_ids(names), new_cols=_ids(names, "n"), new=_new(spec), match=match,
                differs=differs), params).rowcount
        # Same values, other text (or a row loaded before hashes were kept): only the hash is brought up to
        # date, so the row keeps its change stamp and is not a candidate again.
        self.conn.execute(sql.SQL(
            "update {target} l set _row_hash = n._hash from {new} n where {match} and not l._deleted "
            "and not {differs} and l._row_hash is distinct from n._hash").format(
                target=target, new=_new(spec), match=match, differs=differs), params)
        inserted = self.conn.execute(sql.SQL(
            "insert into {target} (district_code, {cols}, _batch_id, _changed_at, _deleted, _row_hash) "
            "select %(district)s, {new_cols}, %(batch)s, now(), false, n._hash from {new} n where not exists "
            "(select 1 from {target} l where {match})").format(
                target=target, cols=_ids(names), new_cols=_ids(names, "n"), new=_new(spec), match=match),
            params).rowcount
        deleted = self._flag_gone(spec, batch_id)
        return TableLoadStats(spec.name, inserted=inserted, updated=updated, deleted=deleted,
                              unchanged=staged - inserted - updated)

    def _ensure_partitions(self) -> None:
        """Create the district's missing partitions where they cannot deadlock with another district's load.

        Creating a partition locks its parent table exclusively until the load commits, and two districts
        load at once. Every load takes those locks in the contract's table order and before reading the
        tables concerned: a first load (every partition missing) reads no landing table and creates each
        partition as it applies it, so that another district's first load still runs alongside until then;
        a district missing only some partitions creates them here, before reading anything.
        """
        create = ensure_district_partition if self.district_level else ensure_partition
        self.missing_partitions = {spec.name for spec in TABLES if not self._partition_exists(spec)}
        self.create_at_apply = len(self.missing_partitions) == len(TABLES)
        if not self.create_at_apply:
            for spec in TABLES:
                if spec.name in self.missing_partitions:
                    create(self.conn, spec.name, self.code)

    def _partition_exists(self, spec: Table) -> bool:
        exists = self.conn.execute("select to_regclass(%s) is not null", (
            sql.Identifier("landing", partition_name(spec.name, self.code)).as_string(self.conn),)).fetchone()
        return bool(exists and exists[0])

    def _flag_gone(self, spec: Table, batch_id: int) -> int:
        if not self.changes[spec.name].gone:
            return 0
        return self.conn.execute(sql.SQL(
            "update {target} l set _deleted = true, _batch_id = %s, _changed_at = now() "
            "where l.district_code = %s and l.{pk} in {gone} and not l._deleted").format(
                target=sql.Identifier("landing", spec.name), gone=gone_keys(spec),
                pk=sql.Identifier(spec.primary_key)), (batch_id, self.code)).rowcount

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
        self._ensure_partitions()
        if not self.district_level:  # a district-level writer may not delete them; a state-level load will
            prune_superseded_rows(conn, self.code)
        create_change_tables(conn)
        # The comparison of a large district's key list with landing is one hash join: let it stay in memory.
        conn.execute("select set_config('work_mem', %s, true)", (LOAD_WORK_MEM,))
        if self.reserved_batch_id is None:
            batch_row = conn.execute(
                "insert into landing.load_batch (district_code, started_at, origin) values (%s, now(), %s) "
                "returning batch_id", (self.code, self.origin)).fetchone()
        else:
            batch_row = conn.execute(
                "insert into landing.load_batch (batch_id, district_code, started_at, origin) overriding system "
                "value values (%s, %s, now(), %s) returning batch_id",
                (self.reserved_batch_id, self.code, self.origin)).fetchone()
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
            stats.staged = self.changes[spec.name].staged
            stats.listed = self.changes[spec.name].in_listing
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
                  allow_mass_delete: str | None = None, batch_id: int | None = None,
                  origin: str | None = None) -> DistrictLoadResult:
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
                result = _DistrictLoad(conn, district, source, guard, batch_id, origin).run()
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


def load_workers() -> int:
    """ATTENDANCE_LOAD_WORKERS (default 2): how many districts load at the same time."""
    raw = os.environ.get(LOAD_WORKERS_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_LOAD_WORKERS
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise GuardSettingError(f"environment variable {LOAD_WORKERS_VARIABLE}={raw!r} is not a number of "
                                "districts to load at once between 1 and 64")
    return int(raw)


class _DistrictQueue:
    """Hands out the districts in order to the load workers; results land at the district's position."""

    def __init__(self, districts: list[District], batch_ids: list[int] | None) -> None:
        self.districts = districts
        self.batch_ids = batch_ids
        self.results: list[DistrictLoadResult | None] = [None] * len(districts)
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            if self._next >= len(self.districts):
                return None
            self._next += 1
            return self._next - 1


def _load_worker(queue: _DistrictQueue, conn: psycopg.Connection | None, allow_mass_delete: str | None,
                 origin: str | None = None) -> None:
    """Load districts from the queue one after another on this worker's own writer connection."""
    try:
        while (index := queue.take()) is not None:
            district = queue.districts[index]
            started = time.perf_counter()
            if conn is None or conn.closed:
                conn = _reconnect_state()
            try:
                if conn is None:
                    raise DistrictLoadError(district.code, "not loaded: the state database cannot be reached")
                batch_id = queue.batch_ids[index] if queue.batch_ids else None
                queue.results[index] = load_district(district, conn=conn, allow_mass_delete=allow_mass_delete,
                                                     batch_id=batch_id, origin=origin)
            except DistrictLoadError as error:
                queue.results[index] = DistrictLoadResult(district.code, ok=False, error=str(error),
                                                          duration_s=time.perf_counter() - started)
                if conn is not None:
                    _record_failure(conn, district.code, str(error), origin)
    finally:
        if conn is not None:
            conn.close()


def _reserve_batch_ids(conn: psycopg.Connection, count: int) -> list[int] | None:
    """Batch ids for the districts in their order, as one district after another would draw them: loads
    that run side by side then stamp the same ids as a serial run would, whichever starts first. None
    for a user who may not draw them (a district-level writer): each load draws its own."""
    try:
        with conn.transaction():
            rows = conn.execute("select nextval(pg_get_serial_sequence('landing.load_batch', 'batch_id')) "
                                "from generate_series(1, %s)", (count,)).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return sorted(int(row[0]) for row in rows)


def load_districts(districts: list[District], *, allow_mass_delete: str | None = None,
                   origin: str | None = None) -> list[DistrictLoadResult]:
    """Load the districts, two at a time (load_workers), each in its own transaction; a district's failure
    is recorded and does not stop the others. Results come in the order of `districts`.

    The caller's writer lock covers the whole run: every worker connection is marked as a writer session
    (writer_sessions.py), so a killed run's loads are ended like a single connection's.
    Raises StateDatabaseUnavailable when the state database cannot be reached before any load; a server
    lost midway fails the district being loaded and every later one that cannot reconnect.
    """
    global_max_share(), min_rows()  # a malformed guard setting is refused before anything is written
    workers = max(1, min(load_workers(), len(districts)))
    try:
        prepare_warehouse()
        first: psycopg.Connection | None = _connect_state()
    except psycopg.OperationalError as error:
        raise StateDatabaseUnavailable(f"cannot reach the state database: {_reason(error)}") from None
    queue = _DistrictQueue(districts, _reserve_batch_ids(first, len(districts)) if workers > 1 else None)
    if workers == 1:
        _load_worker(queue, first, allow_mass_delete, origin)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="landing-load") as pool:
            futures = [pool.submit(_load_worker, queue, first if i == 0 else _reconnect_state(), allow_mass_delete,
                                   origin)
                       for i in range(workers)]
            for future in futures:
                future.result()  # an unexpected error surfaces here, as it did from a single loop
    return [result for result in queue.results if result is not None]
