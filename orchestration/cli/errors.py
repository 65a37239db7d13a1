"""What `attendance-sync` says when a command fails: one line on stderr, never a traceback for a failure
a user or the environment can cause (bad input, missing rights, a server that is down or lost).

A traceback is kept for what can only be a bug, and only with `--debug` or ATTENDANCE_DEBUG=1: an
operator reading a traceback learns nothing, and a traceback may print settings it should not.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from dataclasses import dataclass

PROGRAM = "attendance-sync"
DEBUG_VARIABLE = "ATTENDANCE_DEBUG"
# Exit codes: refused before anything changed (bad input or settings, missing rights), failed while running,
# interrupted (the shell's convention for SIGINT).
REFUSED, FAILED, INTERRUPTED = 2, 1, 130

# The project's own errors, by qualified class name so that reporting one never imports a module the
# command did not load. Their text already names district, table, row, column or file.
REFUSALS = frozenset({
    "orchestration.districts.registry.RegistryError",
    "orchestration.warehouse.rights.PermissionDenied",
    "orchestration.warehouse.rights.RightsError",
    "orchestration.warehouse.logins.LoginError",
    "orchestration.districts.admin.DistrictAdminError",
    "orchestration.warehouse.writer_lock.WriterLockError",
    "orchestration.warehouse.writer_sessions.LockTimeoutSettingError",
    "orchestration.demo.data.DemoDataError",
    "orchestration.cli.errors.SettingsError",
})
FAILURES = frozenset({
    "orchestration.landing.load.DistrictLoadError",
    "orchestration.landing.load.StateDatabaseUnavailable",
    "orchestration.districts.sources.SourceError",
    "orchestration.warehouse.embedded_postgres.EmbeddedPostgresError",
    "orchestration.dbt.runner.DbtRunError",
})
# SQLSTATEs of a server that is gone: class 08 (connection exception) and the shutdown codes of class 57.
LOST_SERVER_STATES = ("08", "57P01", "57P02", "57P03")
_SERVER_IN_TEXT = re.compile(r'connection to server at "([^"]+)"(?: \([^)]*\))?, port (\d+)')
_ROLE_IN_TEXT = re.compile(r'role "([^"]+)" does not exist')
# Whatever a driver message might echo back: key=value passwords and user:password@ in URLs.
_PASSWORD_SETTING = re.compile(r"(password\s*=\s*)(?:'[^']*'|\S+)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+(@)")


class SettingsError(ValueError):
    """The environment's settings (server, time zone) are unusable; named by variable."""


@dataclass(frozen=True)
class CommandFailure:
    message: str
    exit_code: int


def debugging(args: argparse.Namespace | None = None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0")


def check_settings() -> None:
    """Refuse unusable environment settings before a command starts, naming the variables."""
    from orchestration.dbt import runner as dbt_runner
    from orchestration.warehouse import database

    try:
        database.connection_settings()
    except ValueError as error:
        named = [name for name in (database.URL_VARIABLE, *database.PG_VARIABLES, "ATTENDANCE_EMBEDDED_PORT")
                 if os.environ.get(name) and name != "PGPASSWORD"]
        raise SettingsError(f"invalid database settings ({', '.join(named) or 'defaults'}): {error}") from None
    try:
        dbt_runner.state_time_zone()
    except ValueError as error:
        raise SettingsError(str(error)) from None


def report(error: BaseException, args: argparse.Namespace | None) -> int:
    """Print the one message for `error` (and its traceback when debugging) and return the exit code."""
    if isinstance(error, KeyboardInterrupt):
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return INTERRUPTED
    failure = describe(error, args)
    if debugging(args):
        traceback.print_exception(error, file=sys.stderr)
    if failure is None:
        hint = "" if debugging(args) else f" (run with --debug or {DEBUG_VARIABLE}=1 for the traceback)"
        failure = CommandFailure(f"unexpected error: {type(error).__name__}: {first_line(error)}{hint}", FAILED)
    print(f"{PROGRAM}: {redact(failure.message)}", file=sys.stderr)
    return failure.exit_code


def describe(error: BaseException, args: argparse.Namespace | None) -> CommandFailure | None:
    """The message and exit code of an error a user or the environment can cause; None for a bug."""
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(error).__mro__}
    if names & REFUSALS:
        return CommandFailure(str(error), REFUSED)
    if names & FAILURES:
        return CommandFailure(str(error), FAILED)
    if "psycopg.Error" in names:
        return _database_failure(error, args)
    if isinstance(error, OSError) and error.filename:
        return CommandFailure(f"{error.strerror or error}: {error.filename}", FAILED)
    return None


def _database_failure(error: BaseException, args: argparse.Namespace | None) -> CommandFailure | None:
    import psycopg

    state = getattr(error, "sqlstate", None) or ""
    text = first_line(error)
    if isinstance(error, psycopg.OperationalError) and (not state or state.startswith(LOST_SERVER_STATES)):
        return _server_failure(text)
    command = _rights_command(args)
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        user = connected_user()
        if command:
            return CommandFailure(f"{command}: permission denied: {user} may not change tool rights ({text}); "
                                  f"connect as an administrator of the database roles", REFUSED)
        return CommandFailure(f"permission denied for {user}: {text}", REFUSED)
    if isinstance(error, psycopg.errors.UndefinedObject):
        match = _ROLE_IN_TEXT.search(text)
        if command and match and match.group(1) == getattr(args, "user", None):
            return CommandFailure(f"{command}: there is no database login role {match.group(1)!r} on "
                                  f"{server_named_in('')}; create the login first", REFUSED)
        return CommandFailure(f"{command + ': ' if command else ''}{text}", REFUSED)
    if isinstance(error, psycopg.OperationalError):  # lock timeouts, cancelled statements, ...
        return CommandFailure(f"the database stopped the command: {text}", FAILED)
    return None


def _server_failure(text: str) -> CommandFailure:
    server = server_named_in(text)
    if _SERVER_IN_TEXT.search(text):  # libpq names the server when it cannot connect at all
        reason = text.rsplit("failed:", 1)[-1].strip()
        return CommandFailure(f"the database server at {server} cannot be reached ({reason}); check that it is "
                              f"running and accepts connections, then try again", FAILED)
    return CommandFailure(f"the connection to the database server at {server} was lost ({text}); check that "
                          f"the server is running, then try again", FAILED)


def _rights_command(args: argparse.Namespace | None) -> str | None:
    if args is None or getattr(args, "name", None) != "rights":
        return None
    return f"rights {getattr(args, 'action', '')} {getattr(args, 'user', '')}".strip()


def server_named_in(text: str) -> str:
    """host:port of the server a driver message names, else of the state database server."""
    match = _SERVER_IN_TEXT.search(text)
    if match:
        return f"{match.group(1)}:{match.group(2)}"
    try:
        from orchestration.warehouse import database

        settings = database.connection_settings()
    except Exception:
        return "the configured address"
    return f"{settings.host}:{settings.port}"


def connected_user() -> str:
    try:
        from orchestration.warehouse import database

        return database.connection_settings().user
    except Exception:
        return "this user"


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***\2", _PASSWORD_SETTING.sub(r"\1***", text))
