"""Tool rights (DOMAIN.md): Read may query state and reports; Write may also run loads, resyncs and refreshes.

Rights are memberships in two database roles, so the database itself enforces them: every landing,
state and report table is owned by the write role, and a user outside it cannot change any of them.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from orchestration import database
from orchestration.warehouse_setup import READ_ROLE, WRITE_ROLE, ensure_roles

RIGHTS = {"read": READ_ROLE, "write": WRITE_ROLE}


class PermissionDenied(PermissionError):
    pass


def grant(user: str, right: str) -> None:
    """Give an existing login role the Read or Write right (Write includes Read)."""
    with database.connect() as conn, conn.transaction():
        ensure_roles(conn)
        conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(RIGHTS[right]), sql.Identifier(user)))


def revoke(user: str, right: str) -> None:
    with database.connect() as conn, conn.transaction():
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
