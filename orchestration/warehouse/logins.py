"""Database logins for people and services: a role with its own password and the Read or Write right.

Every login of the embedded server needs a password (scram-sha-256), so a user granted a right also
needs a password to use it. The password is read from a hidden prompt or from an environment variable,
never from the command line (which other local users can see), and only its SCRAM verifier, computed
by libpq, is sent to the server: the clear text appears in no statement, log or output.
"""

from __future__ import annotations

import getpass
import os

import psycopg
from psycopg import sql

from orchestration.warehouse import database
from orchestration.warehouse import rights as tool_rights


class LoginError(ValueError):
    pass


def read_password(user: str, password_env: str | None) -> str:
    """The new login's password: from the variable `password_env` names, else typed twice, hidden."""
    if password_env:
        password = os.environ.get(password_env)
        if password is None:
            raise LoginError(f"environment variable {password_env} (--password-env) is not set")
    else:
        try:
            password = getpass.getpass(f"password for {user}: ")
            if getpass.getpass(f"password for {user} again: ") != password:
                raise LoginError("the two passwords differ; nothing was changed")
        except EOFError:
            raise LoginError("no password was typed; nothing was changed") from None
    if not password:
        raise LoginError(f"the password for {user} is empty; nothing was changed")
    return password


def create_login(user: str, right: str, password: str) -> None:
    """Create the login role `user` with `password` and give it the Read or Write right."""
    if right not in tool_rights.RIGHTS:
        raise LoginError(f"unknown right {right!r}; use read or write")
    try:
        with database.connect() as conn, conn.transaction():
            if conn.execute("select 1 from pg_roles where rolname = %s", (user,)).fetchone():
                raise LoginError(f"role {user} already exists; nothing was changed")
            verifier = conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256")
            conn.execute(sql.SQL("create role {} login password {}").format(
                sql.Identifier(user), sql.Literal(verifier.decode("ascii"))))
        try:
            tool_rights.grant(user, right)
        except psycopg.Error:
            _drop_role(user)  # a login without its right would be a half-done command
            raise
    except psycopg.Error as error:
        # The server only ever saw the verifier, so its message cannot hold the password.
        reason = error.diag.message_primary or str(error).strip().splitlines()[-1]
        raise LoginError(f"cannot create login {user}: {reason}") from None


def _drop_role(user: str) -> None:
    with database.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(user)))


def cli_create_login(user: str, right: str, password_env: str | None) -> int:
    """`attendance-sync rights create-login USER read|write [--password-env VAR]`."""
    create_login(user, right, read_password(user, password_env))  # a LoginError reaches cli_errors
    print(f"created login {user} with the {right.capitalize()} right; it connects with its own password "
          "(PGUSER, and PGPASSWORD or a pgpass file of its own)")
    return 0
