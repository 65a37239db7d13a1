"""Which districts the state holds, kept in step with the registry; and retiring a district's data.

The registry file is the truth about which districts are current. landing.district lists every district
that has loaded at least once; `in_registry` says whether the registry still lists it. A district removed
from the registry keeps its data (nothing is deleted by editing a file) but is no longer built or
reported; `attendance-sync districts retire CODE` deletes its data, explicitly and on record.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from orchestration.districts.registry import District, RegistryError, load_registry, validate_code
from orchestration.settings import registry_path
from orchestration.warehouse import database
from orchestration.warehouse.rights import require_write
from orchestration.warehouse.setup import WRITE_ROLE, ensure_warehouse
from orchestration.warehouse.writer_lock import state_writer_lock

AUDIT_TABLE = "district_retirement"


class DistrictAdminError(Exception):
    """A refused district command (unknown code, still in the registry, not confirmed)."""


def _district_table_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("select to_regclass('landing.district') is not null").fetchone()
    return bool(row and row[0])


def case_conflicts(conn: psycopg.Connection, codes: list[str]) -> list[tuple[str, str]]:
    """(registry code, stored code) pairs where the state holds the code in another spelling."""
    rows = conn.execute(
        "select r.code, d.district_code from landing.district d join unnest(%s::text[]) as r (code) "
        "on upper(d.district_code) = upper(r.code) and d.district_code <> r.code order by 1, 2",
        (codes,)).fetchall()
    return [(str(code), str(stored)) for code, stored in rows]


def sync_registry(conn: psycopg.Connection, districts: list[District]) -> None:
    """Mark which districts of landing.district the registry lists, and refresh their names and sources.

    Refuses, naming both codes, a registry code that the state holds in another spelling (old data under
    `d01` while the registry says D01): merging them silently could mix or drop a district's rows.
    """
    codes = [district.code for district in districts]
    conflicts = case_conflicts(conn, codes)
    if conflicts:
        pairs = "; ".join(f"registry code {code} vs {stored!r} in the state" for code, stored in conflicts)
        raise RegistryError(
            f"district code(s) that differ only in case from a district already in the state: {pairs}. "
            "District codes are upper case; nothing was loaded or built. If the old code's data is obsolete, "
            f"remove it with: attendance-sync districts retire {conflicts[0][1]}")
    conn.execute(sql.SQL("set local role {}").format(sql.Identifier(WRITE_ROLE)))
    conn.execute(
        "update landing.district d set in_registry = (d.district_code = any(%(codes)s::text[])) "
        "where d.in_registry is distinct from (d.district_code = any(%(codes)s::text[]))", {"codes": codes})
    conn.execute(
        "update landing.district d set name = r.name, source = r.source "
        "from unnest(%s::text[], %s::text[], %s::text[]) as r (code, name, source) "
        "where d.district_code = r.code and (d.name, d.source) is distinct from (r.name, r.source)",
        (codes, [d.name for d in districts], [d.source.describe() for d in districts]))
    conn.execute("reset role")


def sync_registry_file(conn: psycopg.Connection | None = None) -> None:
    """sync_registry from the registry file, before a build: a no-op without a file or a warehouse yet.

    A user without the Write right cannot change landing.district; their build reads it as last synced
    (and a build needs the Write right anyway).
    """
    if not registry_path().exists():
        return
    districts = load_registry()
    own = conn is None
    conn = conn or database.connect()
    try:
        if not _district_table_exists(conn):
            return
        try:
            with conn.transaction():
                ensure_warehouse(conn)  # adds in_registry to a warehouse made before it existed
                sync_registry(conn, districts)
        except psycopg.errors.InsufficientPrivilege:
            conn.rollback()
            conflicts = case_conflicts(conn, [d.code for d in districts])
            if conflicts:
                raise RegistryError(f"registry code {conflicts[0][0]} differs only in case from district "
                                    f"{conflicts[0][1]!r} in the state") from None
        else:
            conn.commit()
    finally:
        if own:
            conn.close()


@dataclass(frozen=True)
class DistrictEntry:
    code: str
    name: str
    in_registry: bool
    loaded: bool

    def describe(self) -> str:
        if not self.in_registry:
            return "removed from registry (data kept; delete it with: attendance-sync districts retire " \
                f"{self.code})" if self.loaded else "removed from registry"
        return "in registry, loaded" if self.loaded else "in registry, not loaded yet"


def list_districts() -> list[DistrictEntry]:
    """Every code of the registry and of the state: registry order first, then codes only the state holds."""
    registry = load_registry()
    with database.connect(autocommit=True) as conn:
        stored: dict[str, str] = {}
        if _district_table_exists(conn):
            stored = {str(code): str(name) for code, name in
                      conn.execute("select district_code, name from landing.district order by 1").fetchall()}
    entries = [DistrictEntry(d.code, d.name, True, d.code in stored) for d in registry]
    listed = {d.code for d in registry}
    entries += [DistrictEntry(code, name, False, True) for code, name in stored.items() if code not in listed]
    return entries


def format_district_list(entries: list[DistrictEntry]) -> str:
    width = max([len("district"), *(len(e.code) for e in entries)])
    lines = [f"{'district'.ljust(width)}  status"]
    lines += [f"{e.code.ljust(width)}  {e.describe()}  ({e.name})" for e in entries]
    return "\n".join(lines)


def _tables_with_codes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(schema, table) of every table in landing/state/reports with a district_code column, the audit
    excepted, in an order that deletes referencing rows first (load_log before load_batch)."""
    rows = conn.execute(
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "join pg_attribute a on a.attrelid = c.oid and a.attname = 'district_code' and not a.attisdropped "
        "where n.nspname in ('landing', 'state', 'reports') and c.relkind in ('r', 'p') and not c.relispartition "
        "and not (n.nspname = 'landing' and c.relname = %s) order by 1, 2", (AUDIT_TABLE,)).fetchall()
    last = {("landing", "load_batch"): 1, ("landing", "district"): 2}
    return sorted(((str(s), str(t)) for s, t in rows), key=lambda item: last.get(item, 0))


def _partitions_of(conn: psycopg.Connection, schema: str, table: str, code: str) -> list[str]:
    """The partitions of a LIST-partitioned table holding exactly `code` (by their bound, not their name)."""
    rows = conn.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = to_regclass(%s) and pg_get_expr(c.relpartbound, c.oid) = %s",
        (f"{schema}.{table}", f"FOR VALUES IN ({sql.quote(code)})")).fetchall()
    return [str(row[0]) for row in rows]


def stored_code(conn: psycopg.Connection, code: str) -> str | None:
    """The code as the state stores it: exactly as given (an old lower-case code), else its canonical form."""
    for candidate in dict.fromkeys([code, code.upper()]):
        if conn.execute("select 1 from landing.district where district_code = %s", (candidate,)).fetchone():
            return candidate
    return None


def _delete_district(conn: psycopg.Connection, code: str) -> dict[str, int]:
    deleted: dict[str, int] = {}
    for schema, table in _tables_with_codes(conn):
        count = conn.execute(sql.SQL("delete from {} where district_code = %s").format(
            sql.Identifier(schema, table)), (code,)).rowcount
        for partition in _partitions_of(conn, schema, table, code):
            conn.execute(sql.SQL("drop table {}").format(sql.Identifier(schema, partition)))
        if count:
            deleted[f"{schema}.{table}"] = count
    return deleted


def confirmed(code: str, yes: bool, ask: Callable[[str], str] = input) -> bool:
    """--yes, or the code typed back on a terminal; never assumed without either."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise DistrictAdminError(f"retiring district {code} deletes all its data; confirm with --yes "
                                 "(no terminal to ask on)")
    answer = ask(f"This deletes every landing, state and report row of district {code}. "
                 f"Type the code ({code}) to confirm: ")
    return answer.strip() == code


def retire_district(code: str, *, yes: bool = False, ask: Callable[[str], str] = input) -> tuple[str, dict[str, int]]:
    """Delete a district that the registry no longer lists from landing, state and reports, on record.

    One transaction under the state writer lock: either every row goes and the retirement is recorded,
    or nothing changes.
    """
    code = validate_code(code)
    listed = {d.code for d in load_registry()}
    if code in listed:
        raise DistrictAdminError(f"district {code} is still in the registry ({registry_path()}); remove it "
                                 "from the registry first, then retire it")
    with database.connect() as conn:
        require_write(conn, f"retire district {code}")
        if not _district_table_exists(conn) or (stored := stored_code(conn, code)) is None:
            raise DistrictAdminError(f"district {code} is not in the state (landing.district); nothing to retire")
        if stored in listed:
            raise DistrictAdminError(f"district {stored} is still in the registry ({registry_path()}); remove it "
                                     "from the registry first, then retire it")
        conn.rollback()
        if not confirmed(stored, yes, ask):
            raise DistrictAdminError(f"not confirmed; district {stored} was not retired")
        with state_writer_lock(f"attendance-sync districts retire {stored}"), conn.transaction():
            name = conn.execute("select name from landing.district where district_code = %s", (stored,)).fetchone()
            conn.execute(sql.SQL("set local role {}").format(sql.Identifier(WRITE_ROLE)))
            deleted = _delete_district(conn, stored)
            conn.execute(
                "insert into landing.district_retirement (district_code, name, db_user, os_user, rows_deleted) "
                "values (%s, %s, session_user, %s, %s)",
                (stored, name[0] if name else None, getpass.getuser(), Jsonb(deleted)))
    return stored, deleted


def cmd_districts(action: str, code: str | None, yes: bool) -> int:
    """`attendance-sync districts list|retire CODE`."""
    if action == "list":
        print(format_district_list(list_districts()))
        return 0
    if not code:
        raise DistrictAdminError("districts retire needs the district code: attendance-sync districts retire CODE")
    stored, deleted = retire_district(code, yes=yes)  # refusals reach the user through cli_errors
    print(f"retired district {stored}: {sum(deleted.values())} row(s) deleted from {len(deleted)} table(s); "
          f"recorded in landing.{AUDIT_TABLE}")
    return 0
