"""Reading a district's tables from where the registry says they are: its own database or CSV extracts.

Both readers stream rows as text into a temporary table on the state connection with COPY; typing and
validation happen afterwards in SQL, where a bad value can be reported with its row and column.
"""

from __future__ import annotations

import codecs
import csv
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, quote_plus

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from orchestration.districts.contract import Table
from orchestration.districts.registry import District, resolve_url
from orchestration.warehouse import database


class SourceError(Exception):
    """A problem with the district's data or its source, located as precisely as known."""

    def __init__(self, message: str, *, table: str | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.table = table
        self.column = column


@dataclass(frozen=True)
class RowLocator:
    """How an error names a row: by line of the extract, or by primary key in a database."""

    by_line: bool

    def describe(self, row_number: int, key: str | None, key_column: str) -> str:
        if self.by_line:
            return f"line {row_number + 1}"  # the header is line 1
        return f"row {key_column}={key}"


class DistrictSource(Protocol):
    locator: RowLocator

    def copy_table(self, spec: Table, target: sql.Composable, state: psycopg.Connection) -> list[str]:
        """Stream the table's rows into `target` (text columns); return the column order used."""
        ...

    def describe_row(self, spec: Table, row_number: int, key: str | None) -> str:
        """How an error names the `row_number`-th row copied (1-based) of `spec`."""
        ...

    def copy_row_hashes(self, spec: Table, target: sql.Composable, state: psycopg.Connection,
                        ranges: list[tuple[int, int]] | None = None) -> bool:
        """Stream (key as text, row hash) of every row, in key order, into `target`'s (_key, _hash).

        The hash is md5 of the row's text form (row_text_hash); False when the source cannot compute it
        itself (CSV: the loader copies the file and hashes it on the state side). `ranges`: only the rows
        whose integer key lies in one of these (first, last) key ranges (bucket_digests).
        """
        ...

    def bucket_digests(self, spec: Table) -> dict[int, tuple[int, Decimal]] | None:
        """Per key bucket (key_bucket): the row count and the sum of the rows' hash values (row_hash_value);
        None when the source cannot compute them (a CSV file, a key that is not an integer column)."""
        ...

    def copy_rows_by_key(self, spec: Table, target: sql.Composable, state: psycopg.Connection,
                         keys: list[str]) -> None:
        """Stream the rows with these keys (text form, as copy_row_hashes gave them) into `target`."""
        ...

    def key_is_unique(self, spec: Table) -> bool:
        """True when the source itself guarantees that the table's key is unique (a constraint)."""
        ...

    def close(self) -> None: ...


def row_text_hash(columns: sql.Composable) -> sql.Composable:
    """md5 of a row's text form: the same on the district side (typed columns) and the state side (their
    text as COPY moved it), because a row's text form is made of its columns' own output texts."""
    return sql.SQL("md5(row({})::text)").format(columns)


# A key bucket holds 2**BUCKET_BITS consecutive integer keys: a reload lists only the buckets whose digest
# differs from landing's (orchestration/landing/buckets.py).
BUCKET_BITS = 12
INTEGER_KEY_TYPES = ("smallint", "integer", "bigint")


def key_bucket(key: sql.Composable) -> sql.Composable:
    """An integer key's bucket (a shift rounds down, negative keys too, so a bucket is one key range)."""
    return sql.SQL("({}::bigint >> {})").format(key, sql.Literal(BUCKET_BITS))


def row_hash_value(hash_text: sql.Composable) -> sql.Composable:
    """The first 16 hex digits of a row hash as a bigint: summed (as numeric) into a bucket's digest."""
    return sql.SQL("('x' || left({}, 16))::bit(64)::bigint").format(hash_text)


def in_key_ranges(key: sql.Composable, ranges: list[tuple[int, int]]) -> tuple[sql.Composable, sql.Composable]:
    """A FROM item of the (first, last) key ranges, and the join condition putting `key` in one of them:
    each range is then one index range scan."""
    items = sql.SQL("unnest({}::bigint[], {}::bigint[]) as _range(_first, _last)").format(
        sql.Literal([first for first, _ in ranges]), sql.Literal([last for _, last in ranges]))
    return items, sql.SQL("{} between _range._first and _range._last").format(key)


def scrub_password(message: str, conninfo: str) -> str:
    """`message` without the password `conninfo` holds, in any of the forms it may be quoted in."""
    try:
        password = conninfo_to_dict(conninfo).get("password")
    except psycopg.Error:
        # Unparseable settings may hold the password anywhere: show nothing of libpq's complaint.
        return "the connection URL is not valid libpq syntax (details hidden: they may contain the password)"
    if not password:
        return message
    for form in sorted({str(password), quote(str(password), safe=""), quote_plus(str(password))}, key=len,
                       reverse=True):
        message = message.replace(form, "***")
    return message


class DatabaseSource:
    locator = RowLocator(by_line=False)

    def __init__(self, district: District) -> None:
        source = district.source
        conninfo = ""
        try:
            if source.kind == "database":
                assert source.database is not None
                settings = database.ensure_server()
                self.conn = psycopg.connect(settings.conninfo(source.database), connect_timeout=10)
            else:
                conninfo = resolve_url(source, district.code)
                self.conn = database.connect_url(conninfo)
        except psycopg.Error as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            if source.kind == "url":
                reason = scrub_password(reason, conninfo)
            raise SourceError(f"cannot reach the district database ({source.describe()}): {reason}") from None
        # One snapshot for the whole district: the catalog and every table are read in one repeatable-read
        # transaction, so a SIS transaction committing mid-load (a new student and their attendance) is
        # either wholly in the load or wholly out of it. The transaction starts with _columns() and ends
        # when the source is closed.
        self.conn.autocommit = False
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self.conn.read_only = True
        self._unique_columns: set[tuple[str, str]] | None = None
        try:
            self.columns = self._columns()
        except psycopg.Error as error:
            self.conn.close()
            raise SourceError(f"cannot read the district database's catalog: {_reason(error)}") from None

    def _columns(self) -> dict[str, set[str]]:
        # pg_catalog, not information_schema: the latter hides tables the user may not read, which would
        # turn "no permission" into a misleading "table is missing".
        rows = self.conn.execute(
            "select c.relname, a.attname from pg_attribute a join pg_class c on c.oid = a.attrelid "
            "join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' "
            "and c.relkind in ('r', 'v', 'm', 'p', 'f') and a.attnum > 0 and not a.attisdropped"
        ).fetchall()
        columns: dict[str, set[str]] = {}
        for table_name, column_name in rows:
            columns.setdefault(table_name, set()).add(column_name)
        return columns

    def copy_table(self, spec: Table, target: sql.Composable, state: psycopg.Connection) -> list[str]:
        self._check_columns(spec)
        names = spec.column_names
        select = sql.SQL("copy (select {} from public.{} order by {}) to stdout").format(
            sql.SQL(", ").join(sql.Identifier(n) for n in names), sql.Identifier(spec.name),
            sql.Identifier(spec.primary_key))
        load = sql.SQL("copy {} ({}) from stdin").format(target, sql.SQL(", ").join(sql.Identifier(n) for n in names))
        self._copy_out(select, load, spec, state)
        return names

    def describe_row(self, spec: Table, row_number: int, key: str | None) -> str:
        return self.locator.describe(row_number, key, spec.primary_key)

    def _check_columns(self, spec: Table) -> None:
        present = self.columns.get(spec.name)
        if present is None:
            raise SourceError("table is missing from the district database", table=spec.name)
        missing = [name for name in spec.column_names if name not in present]
        if missing:
            raise SourceError(f"column {missing[0]} is missing from the district database", table=spec.name,
                              column=missing[0])

    def _copy_out(self, query: sql.Composable, load: sql.Composable, spec: Table, state: psycopg.Connection) -> None:
        # Text format on both sides: rows pass through byte for byte, with no Python-side parsing.
        with state.cursor().copy(load) as into:
            try:
                with self.conn.cursor().copy(query) as out:
                    for chunk in out:
                        into.write(chunk)
            except psycopg.OperationalError as error:
                if not self.conn.closed:
                    raise  # the state side failed, reported by the loader
                raise SourceError(f"lost the connection to the district database while reading: {_reason(error)}",
                                  table=spec.name) from None

    def copy_row_hashes(self, spec: Table, target: sql.Composable, state: psycopg.Connection,
                        ranges: list[tuple[int, int]] | None = None) -> bool:
        self._check_columns(spec)
        pk = sql.Identifier(spec.primary_key)
        columns = sql.SQL(", ").join(sql.Identifier(spec.name, n) for n in spec.column_names)
        rows = sql.SQL("public.{}").format(sql.Identifier(spec.name))
        if ranges is not None:
            items, condition = in_key_ranges(sql.Identifier(spec.name, spec.primary_key), ranges)
            rows = sql.SQL("{} join {} on {}").format(items, rows, condition)
        query = sql.SQL("copy (select {table}.{pk}::text, {hash} from {rows} order by {table}.{pk}) to stdout").format(
            pk=pk, hash=row_text_hash(columns), table=sql.Identifier(spec.name), rows=rows)
        self._copy_out(query, sql.SQL("copy {} (_key, _hash) from stdin").format(target), spec, state)
        return True

    def bucket_digests(self, spec: Table) -> dict[int, tuple[int, Decimal]] | None:
        self._check_columns(spec)
        if self._key_type(spec) not in INTEGER_KEY_TYPES:
            return None  # the key's text form decides; only the full listing compares it (changes.py)
        columns = sql.SQL(", ").join(sql.Identifier(n) for n in spec.column_names)
        rows = self.conn.execute(sql.SQL(
            "select {bucket}, count(*), sum({value}::numeric) from public.{table} group by 1").format(
            bucket=key_bucket(sql.Identifier(spec.primary_key)), value=row_hash_value(row_text_hash(columns)),
            table=sql.Identifier(spec.name))).fetchall()
        if any(bucket is None for bucket, _, _ in rows):
            return None  # a row without key: the full listing makes it a candidate and the checks name it
        return {int(bucket): (int(count), total) for bucket, count, total in rows}

    def _key_type(self, spec: Table) -> str:
        row = self.conn.execute(
            "select format_type(a.atttypid, a.atttypmod) from pg_attribute a join pg_class c on c.oid = a.attrelid "
            "join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and c.relname = %s "
            "and a.attname = %s and not a.attisdropped", (spec.name, spec.primary_key)).fetchone()
        return str(row[0]) if row else "text"

    def copy_rows_by_key(self, spec: Table, target: sql.Composable, state: psycopg.Connection,
                         keys: list[str]) -> None:
        names = spec.column_names
        pk = sql.Identifier(spec.primary_key)
        # COPY takes no parameters: the keys go in as one literal array, cast to the key's own type so that
        # the district's key index finds them.
        query = sql.SQL("copy (select {cols} from public.{table} where {pk} = any({keys}::{type}[]) order by {pk}) "
                        "to stdout").format(
            cols=sql.SQL(", ").join(sql.Identifier(n) for n in names), table=sql.Identifier(spec.name), pk=pk,
            keys=sql.Literal(keys), type=sql.SQL(self._key_type(spec)))
        load = sql.SQL("copy {} ({}) from stdin").format(target, sql.SQL(", ").join(sql.Identifier(n) for n in names))
        self._copy_out(query, load, spec, state)

    def key_is_unique(self, spec: Table) -> bool:
        if self._unique_columns is None:  # one catalog query for every table of the load
            self._unique_columns = set(self.conn.execute(
                "select c.relname, a.attname from pg_index i join pg_class c on c.oid = i.indrelid "
                "join pg_namespace n on n.oid = c.relnamespace join pg_attribute a on a.attrelid = c.oid "
                "and a.attnum = i.indkey[0] where n.nspname = 'public' and i.indisunique and i.indnkeyatts = 1 "
                "and i.indpred is null and i.indexprs is null").fetchall())
        return (spec.name, spec.primary_key) in self._unique_columns

    def close(self) -> None:
        self.conn.close()  # also ends the read-only snapshot transaction (rolled back: nothing to keep)


# PostgreSQL's limit of columns per table; the staging table has one more column, its row number.
MAX_HEADER_COLUMNS = 1600 - 1
_COPY_LINE = re.compile(r"\bline (\d+)\b")


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def record_start_line(path: Path, record: int) -> int:
    """The physical line (1-based) where CSV record `record` (0 = the header) starts.

    Quoted fields may span lines, so record and line numbers differ; this re-reads the file, which is
    done only to report an error. Past the end, the line where the last record started.
    """
    previous_limit = csv.field_size_limit(sys.maxsize)  # COPY has no field size limit; neither may this
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            return _start_line(csv.reader(handle), record)
    finally:
        csv.field_size_limit(previous_limit)


def _start_line(reader: Any, record: int) -> int:
    start, last_start, index = 1, 1, 0
    while True:
        try:
            next(reader)
        except StopIteration:
            # COPY counts an unterminated quoted field (which runs to the end) past the last record.
            return last_start
        except csv.Error:
            return start
        if index == record:
            return start
        index += 1
        last_start, start = start, reader.line_num + 1


def first_invalid_utf8(path: Path) -> tuple[int, str] | None:
    """The line and a description of the first byte sequence in `path` that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            carried = len(decoder.getstate()[0])  # an unfinished sequence from the previous chunk
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                position = max(error.start - carried, 0)
                return line + chunk[:position].count(b"\n"), f"byte 0x{error.object[error.start]:02x}"
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return line, "a truncated character at the end of the file"
    return None


class ExtractSource:
    """CSV files, one per table (`<table>.csv`), with a header row naming the columns (any order)."""

    locator = RowLocator(by_line=True)

    def __init__(self, district: District) -> None:
        assert district.source.extract_dir is not None
        self.folder = Path(district.source.extract_dir)
        if not self.folder.is_dir():
            raise SourceError(f"extract directory {self.folder} does not exist")

    def _path(self, spec: Table) -> Path:
        return self.folder / f"{spec.name}.csv"

    def _header(self, spec: Table, path: Path) -> list[str]:
        if path.stat().st_size == 0:
            raise SourceError(f"extract file {path.name} is empty (0 bytes, not even a header row)", table=spec.name)
        # utf-8-sig: a byte order mark (as spreadsheet programs write) is not part of the first column name.
        with open(path, newline="", encoding="utf-8-sig") as handle:
            try:
                header = next(csv.reader(handle))
            except StopIteration:
                raise SourceError(f"extract file {path.name} is empty (no header row)", table=spec.name) from None
            except UnicodeDecodeError:
                raise self._not_utf8(spec, path) from None
            except csv.Error as error:
                raise SourceError(f"extract file {path.name}: the header row cannot be read: {error}",
                                  table=spec.name) from None
        header = [name.strip() for name in header]
        if len(header) > MAX_HEADER_COLUMNS:
            raise SourceError(f"extract file {path.name} has {len(header):,} columns in its header; at most "
                              f"{MAX_HEADER_COLUMNS:,} are supported", table=spec.name)
        seen: dict[str, int] = {}
        for position, name in enumerate(header, start=1):
            if name in seen:
                shown = f"column {name}" if name else "an empty column name"
                raise SourceError(f"extract file {path.name}: {shown} appears twice in the header "
                                  f"(columns {seen[name]} and {position})", table=spec.name)
            seen[name] = position
        return header

    def _not_utf8(self, spec: Table, path: Path) -> SourceError:
        found = first_invalid_utf8(path)
        where = f" (line {found[0]}: {found[1]})" if found else ""
        return SourceError(f"extract file {path.name} is not UTF-8 text{where}; save it as UTF-8",
                           table=spec.name)

    def copy_table(self, spec: Table, target: sql.Composable, state: psycopg.Connection) -> list[str]:
        path = self._path(spec)
        if not path.exists():
            raise SourceError(f"extract file {path.name} is missing from {self.folder}", table=spec.name)
        header = self._header(spec, path)
        missing = [name for name in spec.column_names if name not in header]
        if missing:
            raise SourceError(f"column {missing[0]} is missing from the header of {path.name}", table=spec.name,
                              column=missing[0])
        # Unknown extra columns are tolerated: they land in throwaway columns and are never read.
        targets = [name if name in spec.column_names else f"_extra_{i}" for i, name in enumerate(header)]
        for name in targets:
            if name.startswith("_extra_"):
                state.execute(sql.SQL("alter table {} add column {} text").format(target, sql.Identifier(name)))
        load = sql.SQL("copy {} ({}) from stdin with (format csv, header true, encoding 'UTF8')").format(
            target, sql.SQL(", ").join(sql.Identifier(n) for n in targets))
        try:
            with open(path, "rb") as handle, state.cursor().copy(load) as into:
                while chunk := handle.read(1 << 20):
                    into.write(chunk)
        except psycopg.errors.CharacterNotInRepertoire:
            raise self._not_utf8(spec, path) from None
        except psycopg.errors.DataError as error:
            raise self._copy_error(spec, path, error) from None
        return spec.column_names

    def _copy_error(self, spec: Table, path: Path, error: psycopg.errors.DataError) -> SourceError:
        """COPY's own errors (a wrong column count, an unterminated quote), at the line the record starts.

        COPY counts records, not lines (a quoted field may hold line breaks), so its number is mapped
        back to the file's physical line.
        """
        context = (error.diag.context or "").strip()
        found = _COPY_LINE.search(context)
        where = f"line {record_start_line(path, int(found.group(1)) - 1)}: " if found else ""
        return SourceError(f"{path.name}, {where}{error.diag.message_primary}", table=spec.name)

    def describe_row(self, spec: Table, row_number: int, key: str | None) -> str:
        return f"line {record_start_line(self._path(spec), row_number)}"

    def copy_row_hashes(self, spec: Table, target: sql.Composable, state: psycopg.Connection,
                        ranges: list[tuple[int, int]] | None = None) -> bool:
        return False  # a file has no query engine: the loader copies it whole and hashes on the state side

    def bucket_digests(self, spec: Table) -> dict[int, tuple[int, Decimal]] | None:
        return None  # read whole anyway (copy_row_hashes)

    def copy_rows_by_key(self, spec: Table, target: sql.Composable, state: psycopg.Connection,
                         keys: list[str]) -> None:
        raise NotImplementedError("an extract is always copied whole")

    def key_is_unique(self, spec: Table) -> bool:
        return False

    def close(self) -> None:
        pass


def open_source(district: District) -> DistrictSource:
    if district.source.kind == "extract_dir":
        return ExtractSource(district)
    return DatabaseSource(district)
