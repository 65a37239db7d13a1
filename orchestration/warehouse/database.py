"""The one way to get a database connection.

With `ATTENDANCE_DATABASE_URL` or any of `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD`/`PGDATABASE` in the
environment, that server is used and nothing is started. Otherwise the embedded server is started (or
reused) and the state database is created on it when missing; its superuser's password is read by libpq
from the pgpass file the embedded server maintains (`passfile`), by this process and by every child.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlparse

import psycopg
from psycopg import sql

from orchestration.warehouse import embedded_postgres

URL_VARIABLE = "ATTENDANCE_DATABASE_URL"
PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
DEFAULT_STATE_DATABASE = "attendance_state"


@dataclass(frozen=True)
class ConnectionSettings:
    host: str
    port: int
    user: str
    password: str | None
    dbname: str
    embedded: bool
    # A pgpass file instead of a password: libpq reads it at each connection, so the password is in no
    # command line, URL or environment, and a file written by the server's first start is found at once.
    passfile: str | None = None

    def conninfo(self, dbname: str | None = None) -> str:
        parts = {"host": self.host, "port": str(self.port), "user": self.user,
                 "dbname": dbname or self.dbname}
        if self.password:
            parts["password"] = self.password
        if self.passfile:
            parts["passfile"] = self.passfile
        return psycopg.conninfo.make_conninfo(**parts)

    def url(self, dbname: str | None = None) -> str:
        """A libpq URL without the password (it stays in the environment)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname or self.dbname}"

    def pg_environment(self) -> dict[str, str]:
        """PG* variables for child processes (dbt reads them through profiles.yml)."""
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGDATABASE": self.dbname}
        if self.password:
            env["PGPASSWORD"] = self.password
        if self.passfile:
            env["PGPASSFILE"] = self.passfile
        return env


def connection_settings() -> ConnectionSettings:
    url = os.environ.get(URL_VARIABLE)
    if url:
        parsed = urlparse(url)
        if parsed.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"{URL_VARIABLE} must be a postgresql:// URL, got scheme {parsed.scheme!r}")
        return ConnectionSettings(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 5432,
            user=unquote(parsed.username or "postgres"),
            password=unquote(parsed.password) if parsed.password else None,
            dbname=(parsed.path or "/").lstrip("/") or DEFAULT_STATE_DATABASE,
            embedded=False,
        )
    if any(os.environ.get(name) for name in PG_VARIABLES):
        return ConnectionSettings(
            host=os.environ.get("PGHOST", "127.0.0.1"),
            port=int(os.environ.get("PGPORT", "5432")),
            user=os.environ.get("PGUSER", "postgres"),
            password=os.environ.get("PGPASSWORD"),
            dbname=os.environ.get("PGDATABASE", DEFAULT_STATE_DATABASE),
            embedded=False,
        )
    return ConnectionSettings(
        host=embedded_postgres.HOST,
        port=embedded_postgres.port(),
        user=embedded_postgres.SUPERUSER,
        password=None,
        dbname=os.environ.get("ATTENDANCE_STATE_DATABASE", DEFAULT_STATE_DATABASE),
        embedded=True,
        passfile=str(embedded_postgres.passfile()),
    )


_ready: set[tuple[str, int, str]] = set()


def ensure_server(settings: ConnectionSettings | None = None) -> ConnectionSettings:
    """Start the embedded server when it is the one in use, and create the state database on it."""
    settings = settings or connection_settings()
    key = (settings.host, settings.port, settings.dbname)
    if key in _ready:
        return settings
    if settings.embedded:
        embedded_postgres.start()
        ensure_database(settings.dbname, settings)
    _ready.add(key)
    return settings


def ensure_database(dbname: str, settings: ConnectionSettings | None = None) -> None:
    settings = settings or connection_settings()
    with psycopg.connect(settings.conninfo("postgres"), autocommit=True) as admin:
        exists = admin.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if not exists:
            admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))


def drop_database(dbname: str, settings: ConnectionSettings | None = None) -> None:
    settings = ensure_server(settings)
    with psycopg.connect(settings.conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))


def connect(dbname: str | None = None, *, autocommit: bool = False,
            settings: ConnectionSettings | None = None) -> psycopg.Connection:
    """A connection to the state database (or to `dbname` on the same server)."""
    settings = ensure_server(settings)
    return psycopg.connect(settings.conninfo(dbname), autocommit=autocommit)


def connect_url(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection to another server (a district database), by libpq URL or conninfo."""
    return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)


def passfile_hint(settings: ConnectionSettings) -> str | None:
    """The export line psql and a plain `dbt` command need to find the embedded server's password."""
    if not settings.passfile:
        return None
    return f"export PGPASSFILE={shlex.quote(settings.passfile)}"


def with_database(settings: ConnectionSettings, dbname: str) -> ConnectionSettings:
    return replace(settings, dbname=dbname)
