"""Reading a district's tables from where the registry says they are: its own database or CSV extracts.

Both readers stream rows as text into a temporary table on the state connection with COPY; typing and
validation happen afterwards in SQL, where a bad value can be reported with its row and column.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, quote_plus

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from orchestration import database
from orchestration.district_tables import Table
from orchestration.registry import District, resolve_url


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

    def close(self) -> None: ...


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
        self.conn.read_only = True
        self.columns = self._columns()

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
        present = self.columns.get(spec.name)
        if present is None:
            raise SourceError("table is missing from the district database", table=spec.name)
        missing = [name for name in spec.column_names if name not in present]
        if missing:
            raise SourceError(f"column {missing[0]} is missing from the district database", table=spec.name,
                              column=missing[0])
        names = spec.column_names
        select = sql.SQL("copy (select {} from public.{} order by {}) to stdout").format(
            sql.SQL(", ").join(sql.Identifier(n) for n in names), sql.Identifier(spec.name),
            sql.Identifier(spec.primary_key))
        load = sql.SQL("copy {} ({}) from stdin").format(target, sql.SQL(", ").join(sql.Identifier(n) for n in names))
        # Text format on both sides: rows pass through byte for byte, with no Python-side parsing.
        with self.conn.cursor().copy(select) as out, state.cursor().copy(load) as into:
            for chunk in out:
                into.write(chunk)
        return names

    def close(self) -> None:
        self.conn.close()


class ExtractSource:
    locator = RowLocator(by_line=True)

    def __init__(self, district: District) -> None:
        assert district.source.extract_dir is not None
        self.folder = Path(district.source.extract_dir)
        if not self.folder.is_dir():
            raise SourceError(f"extract directory {self.folder} does not exist")

    def copy_table(self, spec: Table, target: sql.Composable, state: psycopg.Connection) -> list[str]:
        path = self.folder / f"{spec.name}.csv"
        if not path.exists():
            raise SourceError(f"extract file {path.name} is missing from {self.folder}", table=spec.name)
        with open(path, newline="", encoding="utf-8") as handle:
            try:
                header = next(csv.reader(handle))
            except StopIteration:
                raise SourceError(f"extract file {path.name} is empty (no header row)", table=spec.name) from None
            except UnicodeDecodeError as error:
                raise SourceError(f"extract file {path.name} is not UTF-8: {error}", table=spec.name) from None
        header = [name.strip() for name in header]
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
        except psycopg.errors.DataError as error:
            # COPY's own errors (a wrong column count, bad UTF-8) carry the line in their context.
            context = (error.diag.context or "").strip()
            raise SourceError(f"{path.name} cannot be read: {error.diag.message_primary} ({context})",
                              table=spec.name) from None
        return spec.column_names

    def close(self) -> None:
        pass


def open_source(district: District) -> DistrictSource:
    if district.source.kind == "extract_dir":
        return ExtractSource(district)
    return DatabaseSource(district)
