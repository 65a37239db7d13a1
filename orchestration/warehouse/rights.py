"""Tool rights (docs/domain.md): Read may query state and reports; Write may also run loads, resyncs and refreshes.

Rights are memberships in two database roles, so the database itself enforces them: every landing,
state and report table is owned by the write role, and a user outside it cannot change any of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from orchestration.districts.registry import canonical_code
from orchestration.warehouse import database
from orchestration.warehouse.setup import (
    DISTRICT_READ_ROLE,
    DISTRICT_WRITE_ROLE,
    READ_ROLE,
    WRITE_ROLE,
    ensure_roles,
    ensure_warehouse,
)

RIGHTS = {"read": READ_ROLE, "write": WRITE_ROLE}


class PermissionDenied(PermissionError):
    pass


def grant(user: str, right: str) -> None:
    """Give an existing login role the Read or Write right (Write includes Read)."""
    with _administering("grant rights") as conn:
        _check_grantee(conn, user)
        ensure_roles(conn)
        conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(RIGHTS[right]), sql.Identifier(user)))


def revoke(user: str, right: str) -> None:
    with _administering("revoke rights") as conn:
        _check_grantee(conn, user)
        conn.execute(sql.SQL("revoke {} from {}").format(sql.Identifier(RIGHTS[right]), sql.Identifier(user)))


def rights_of(conn: psycopg.Connection, user: str | None = None) -> set[str]:
    """The rights `user` (default: the connected user) holds; none while the roles do not exist yet."""
    held = conn.execute(
        "select rolname from pg_roles where rolname in (%(read)s, %(write)s) "
        "and pg_has_role(coalesce(%(user)s, current_user), oid, 'member')",
        {"user": user, "read": READ_ROLE, "write": WRITE_ROLE}).fetchall()
    names = {role: right for right, role in RIGHTS.items()}
    return {names[row[0]] for row in held}


def require_write(conn: psycopg.Connection, action: str) -> None:
    """Refuse, before anything is written, a user who lacks the Write right."""
    user = conn.execute("select current_user").fetchone()
    if "write" not in rights_of(conn):
        raise PermissionDenied(
            f"permission denied: {user[0] if user else 'this user'} may not {action}; it needs the Write right "
            f"(membership in role {WRITE_ROLE}). Ask an administrator: attendance-sync rights grant USER write")


# --- district-level rights -------------------------------------------------------------------------------
#
# District staff get rights over their own districts only: a row in landing.district_grant per
# (user, read|write, district) and membership in DISTRICT_READ_ROLE (and DISTRICT_WRITE_ROLE for write).
# PostgreSQL enforces the rest (setup.py): row security shows them only their districts' rows,
# and their loads may write only their districts' landing rows. They are members of neither READ_ROLE nor
# WRITE_ROLE, so SET ROLE cannot lift the restriction.

DISTRICT_RIGHTS = {"read": DISTRICT_READ_ROLE, "write": DISTRICT_WRITE_ROLE}
_GROUP_ROLES = frozenset({READ_ROLE, WRITE_ROLE, DISTRICT_READ_ROLE, DISTRICT_WRITE_ROLE})


class RightsError(ValueError):
    """A `rights` command that cannot be done as asked (missing role, no permission to grant, ...)."""


@dataclass(frozen=True)
class Rights:
    user: str
    state_level: set[str]
    districts: dict[str, list[str]]  # right -> district codes

    def describe(self) -> str:
        state = ", ".join(sorted(self.state_level)) or "none"
        granted = "; ".join(f"{right} {', '.join(codes)}" for right, codes in sorted(self.districts.items()))
        return f"{self.user}: state-level: {state}; district-level: {granted or 'none'}"


def _check_grantee(conn: psycopg.Connection, user: str) -> None:
    if user in _GROUP_ROLES:
        raise RightsError(f"{user} is one of the project's group roles; grant rights to a login role instead")
    if conn.execute("select 1 from pg_roles where rolname = %s", (user,)).fetchone() is None:
        raise RightsError(f"role {user} does not exist; create the login first, then grant it a right")


@contextlib.contextmanager
def _administering(action: str) -> Iterator[psycopg.Connection]:
    """A transaction for a `rights` change; a permission error becomes one message naming the user."""
    with database.connect() as conn:
        try:
            with conn.transaction():
                yield conn
        except psycopg.errors.InsufficientPrivilege as error:
            who = conn.execute("select session_user").fetchone()
            raise RightsError(
                f"permission denied: {who[0] if who else 'this user'} may not {action} "
                f"({str(error).strip().splitlines()[0]}); an administrator (superuser, or a role with "
                f"CREATEROLE) must run it") from None


def _known_districts(conn: psycopg.Connection) -> set[str]:
    """Codes a grant may name: the registry's and those already in the state."""
    from orchestration.districts.registry import RegistryError, load_registry

    known = {str(row[0]) for row in conn.execute("select district_code from landing.district").fetchall()}
    with contextlib.suppress(RegistryError, OSError):
        known |= {district.code for district in load_registry()}
    return known


def _validated_codes(conn: psycopg.Connection, districts: list[str]) -> list[str]:
    from orchestration.districts.registry import RegistryError

    try:
        codes = list(dict.fromkeys(canonical_code(code) for code in districts))
    except RegistryError as error:
        raise RightsError(str(error)) from None
    unknown = [code for code in codes if code not in _known_districts(conn)]
    if unknown:
        raise RightsError(f"district(s) {', '.join(unknown)} not in the district registry; nothing was granted")
    return codes


def grant_districts(user: str, right: str, districts: list[str]) -> None:
    """Give an existing login the district-level Read or Write right over `districts` (Write includes Read)."""
    with _administering("grant rights") as conn:
        _check_grantee(conn, user)
        ensure_warehouse(conn)
        state_level = rights_of(conn, user)
        if state_level:
            raise RightsError(
                f"{user} holds the state-level {', '.join(sorted(state_level))} right, which covers every "
                f"district; revoke it first (attendance-sync rights revoke {user} ...)")
        codes = _validated_codes(conn, districts)
        roles = [DISTRICT_READ_ROLE] + ([DISTRICT_WRITE_ROLE] if right == "write" else [])
        for role in roles:
            conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(role), sql.Identifier(user)))
        for code in codes:
            conn.execute("insert into landing.district_grant (grantee, access, district_code) values (%s, %s, %s) "
                         "on conflict do nothing", (user, right, code))
        _secure_existing_tables(conn)


def _secure_existing_tables(conn: psycopg.Connection) -> None:
    """Row security and district-level grants on state and reports tables built before district-level
    rights existed (later builds keep them, dbt_project.yml)."""
    tables = conn.execute(
        "select c.oid::regclass::text, n.nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname in ('state', 'reports') and c.relkind in ('r', 'p') and not c.relispartition "
        "and not c.relrowsecurity").fetchall()
    for table, schema in tables:
        conn.execute("select landing.apply_row_security(%s::regclass)", (table,))
        conn.execute(sql.SQL("grant select on {} to {}").format(sql.SQL(table), sql.Identifier(DISTRICT_READ_ROLE)))
        if schema == "state":  # what dbt_project.yml and macros/row_security.sql grant
            privileges = "select, insert, update" if table == "state.model_build" else "insert, delete"
            conn.execute(sql.SQL("grant {} on {} to {}").format(
                sql.SQL(privileges), sql.SQL(table), sql.Identifier(DISTRICT_WRITE_ROLE)))


def revoke_districts(user: str, right: str, districts: list[str] | None) -> None:
    """Take back district-level rights: of `districts`, or of every district when None.

    Revoking Read takes back Write too (a writer reads what it writes); role memberships go with the
    last granted district.
    """
    rights = ("read", "write") if right == "read" else ("write",)
    with _administering("revoke rights") as conn:
        _check_grantee(conn, user)
        if conn.execute("select to_regclass('landing.district_grant')").fetchone() in (None, (None,)):
            return
        conn.execute("delete from landing.district_grant where grantee = %s and access = any(%s) "
                     "and (%s::text[] is null or district_code = any(%s))", (user, list(rights), districts, districts))
        left = {str(row[0]) for row in conn.execute(
            "select distinct access from landing.district_grant where grantee = %s", (user,)).fetchall()}
        for access, role in DISTRICT_RIGHTS.items():
            if not (left & ({"read", "write"} if access == "read" else {"write"})) and \
                    conn.execute("select pg_has_role(%s, %s, 'member')", (user, role)).fetchone() == (True,):
                conn.execute(sql.SQL("revoke {} from {}").format(sql.Identifier(role), sql.Identifier(user)))


def show(user: str) -> Rights:
    """The user's state-level rights and district grants."""
    with database.connect() as conn:
        _check_grantee(conn, user)
        districts: dict[str, list[str]] = {}
        if conn.execute("select to_regclass('landing.district_grant') is not null").fetchone() == (True,):
            for access, code in conn.execute(
                    "select access, district_code from landing.district_grant where grantee = %s "
                    "order by access, district_code", (user,)).fetchall():
                districts.setdefault(str(access), []).append(str(code))
        return Rights(user, rights_of(conn, user), districts)


def district_scope(conn: psycopg.Connection, right: str) -> list[str] | None:
    """None for a state-level holder of `right` (every district); else the districts granted to the
    connected login for it (empty: none)."""
    if right in rights_of(conn):
        return None
    member = conn.execute(
        "select to_regprocedure('landing.granted_districts(text)') is not null and pg_has_role(session_user, r.oid, "
        "'member') from pg_roles r where r.rolname = %s", (DISTRICT_RIGHTS[right],)).fetchone()
    if member != (True,):
        return []  # (PostgreSQL checks EXECUTE when a query starts, so the function is called only here)
    granted = conn.execute("select array(select landing.granted_districts(%s) order by 1)", (right,)).fetchone()
    return list(granted[0]) if granted else []


def require_district_write(conn: psycopg.Connection, action: str, codes: list[str] | None) -> list[str] | None:
    """The districts a writing command may touch: `codes` unchanged for a state-level writer; for a
    district-level writer `codes` if all are granted, its granted districts when none are asked for,
    else refused naming the districts not granted."""
    scope = district_scope(conn, "write")
    if scope is None:
        return codes
    if not scope:
        require_write(conn, action)
    user = conn.execute("select session_user").fetchone()
    name = user[0] if user else "this user"
    if codes is None:
        return scope
    codes = [canonical_code(code) for code in codes]
    refused = [code for code in dict.fromkeys(codes) if code not in scope]
    if refused:
        raise PermissionDenied(
            f"permission denied: {name} may not {action} for district(s) {', '.join(refused)}; its district-level "
            f"Write right covers {', '.join(scope)} only")
    return codes


def writable_districts(action: str, codes: list[str] | None) -> list[str] | None:
    """require_district_write on a connection of its own (for the CLI, before anything runs)."""
    with database.connect(autocommit=True) as conn:
        ready = conn.execute("select to_regprocedure('landing.granted_districts(text)') is not null").fetchone()
        if ready != (True,):
            return codes  # no district rights can exist yet; the command's own Write check applies
        return require_district_write(conn, action, codes)


# dbt as a district-level writer: the profile's role (ATTENDANCE_DBT_ROLE) is DISTRICT_WRITE_ROLE, so dbt
# changes only the state rows of the granted districts (row security with check). What needs DDL on
# shared tables is a state-level writer's: the reports (each a table over every district, recreated by
# every build), a district's first aggregation build and the Attendance Aggregation Refresh (both
# create and swap a partition), and the first build of a model.
DBT_ROLE_VARIABLE = "ATTENDANCE_DBT_ROLE"
_DISTRICT_WRITER_EXCLUDES = ("--exclude", "path:models/reports")


def use_district_dbt_role(action: str, *, full_refresh: bool = False) -> bool:
    """For a district-level writer, make the dbt processes this process starts run as DISTRICT_WRITE_ROLE;
    a full refresh is refused. False (nothing changed) for anyone else."""
    with database.connect(autocommit=True) as conn:
        if not district_scope(conn, "write"):
            return False
        user = conn.execute("select session_user").fetchone()
    if full_refresh:
        raise PermissionDenied(
            f"permission denied: {user[0] if user else 'this user'} may not {action} with a full refresh: it "
            f"recreates whole tables and partitions, which only a state-level writer may "
            f"(membership in role {WRITE_ROLE})")
    os.environ[DBT_ROLE_VARIABLE] = DISTRICT_WRITE_ROLE
    return True


def district_writer_dbt_args(args: Sequence[str]) -> list[str]:
    """Arguments a district-level writer's dbt build, run or test adds: the reports are left to state-level
    builds (PostgreSQL would refuse to recreate them anyway)."""
    if os.environ.get(DBT_ROLE_VARIABLE) != DISTRICT_WRITE_ROLE or not args or args[0] not in ("build", "run", "test"):
        return []
    return list(_DISTRICT_WRITER_EXCLUDES)
