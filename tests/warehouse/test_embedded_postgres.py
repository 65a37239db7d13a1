"""The embedded server's lifecycle, and that settings in the environment switch it off."""

from __future__ import annotations

import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from orchestration.cli import main as cli_main
from orchestration.warehouse import database, embedded_postgres


def free_port() -> int:
    """A port nobody listens on now: "the session's port + 1" may be another test session's server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((embedded_postgres.HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A second embedded server in a temp folder on its own port, stopped afterwards."""
    home = tmp_path / "home"
    monkeypatch.setenv("ATTENDANCE_HOME", str(home))
    monkeypatch.setenv("ATTENDANCE_EMBEDDED_PORT", str(free_port()))
    yield home
    embedded_postgres.stop()


def test_start_is_idempotent_and_listens_on_loopback_only(own_server: Path) -> None:
    first = embedded_postgres.start()
    second = embedded_postgres.start()
    assert first.running and second.pid == first.pid
    assert first.data_dir == own_server / "pgdata"
    with database.connect(settings=database.connection_settings()) as conn:
        assert conn.execute("show listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("show unix_socket_directories").fetchone() == ("",)
    assert not embedded_postgres.stop().running
    assert not embedded_postgres.status().running


def test_stale_pid_file_is_handled(own_server: Path) -> None:
    embedded_postgres.start()
    embedded_postgres.stop()
    pid_file = own_server / "pgdata" / "postmaster.pid"
    pid_file.write_text("999999\n/nonexistent\n")  # what a crash or a reboot leaves behind
    assert not embedded_postgres.status().running
    assert not pid_file.exists()
    assert embedded_postgres.start().running


def test_cli_db_commands(own_server: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["db", "start"]) == 0
    assert cli_main(["db", "status"]) == 0
    assert "running" in capsys.readouterr().out
    assert cli_main(["db", "stop"]) == 0
    assert "stopped" in capsys.readouterr().out


def test_environment_settings_use_that_server_and_start_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running = database.ensure_server()  # the test session's server stands in for "production"
    empty_home = tmp_path / "unused-home"
    monkeypatch.setenv("ATTENDANCE_HOME", str(empty_home))
    monkeypatch.setenv("PGHOST", running.host)
    monkeypatch.setenv("PGPORT", str(running.port))
    monkeypatch.setenv("PGDATABASE", running.dbname)
    assert running.passfile is not None
    monkeypatch.setenv("PGPASSFILE", running.passfile)  # how psql and dbt users reach a password-only server
    settings = database.connection_settings()
    assert not settings.embedded and settings.port == running.port
    with database.connect() as conn:
        assert conn.execute("select current_database()").fetchone() == (running.dbname,)
    assert not (empty_home / "pgdata").exists()


def test_database_url_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(database.URL_VARIABLE, "postgresql://loader:s%40cret@db.example:6543/state_prod")
    settings = database.connection_settings()
    assert (settings.host, settings.port, settings.user, settings.password, settings.dbname) == (
        "db.example", 6543, "loader", "s@cret", "state_prod")
    assert "s@cret" not in settings.url()
    assert settings.pg_environment()["PGPASSWORD"] == "s@cret"


TRUST_HBA = "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n"


def login_without_password_refused(server: embedded_postgres.ServerStatus, tmp_path: Path) -> bool:
    nothing = tmp_path / "empty-pgpass"
    nothing.touch(mode=0o600)
    try:
        psycopg.connect(host=embedded_postgres.HOST, port=server.port, user="postgres", dbname="postgres",
                        passfile=str(nothing), connect_timeout=10).close()
    except psycopg.OperationalError as error:
        return "no password supplied" in str(error)
    return False


def assert_password_only(server: embedded_postgres.ServerStatus, tmp_path: Path) -> None:
    assert embedded_postgres.hba_is_secure(server.data_dir)
    assert login_without_password_refused(server, tmp_path)
    assert stat.S_IMODE(embedded_postgres.password_file().stat().st_mode) == 0o600
    with database.connect("postgres", settings=database.connection_settings()) as conn:  # through the pgpass file
        assert {row[0] for row in conn.execute("select auth_method from pg_hba_file_rules")} == {"scram-sha-256"}


def make_trust_folder(own_server: Path) -> None:
    """What every data folder made before passwords were required looks like: trust, no password file."""
    pgdata = own_server / "pgdata"
    (pgdata / "pg_hba.conf").write_text(TRUST_HBA)
    embedded_postgres.password_file().unlink()
    embedded_postgres.passfile().unlink()


def test_trust_data_folder_is_switched_over_on_its_next_start(own_server: Path, tmp_path: Path) -> None:
    embedded_postgres.start()
    embedded_postgres.stop()
    make_trust_folder(own_server)
    assert not embedded_postgres.hba_is_secure(own_server / "pgdata")
    server = embedded_postgres.start()
    assert_password_only(server, tmp_path)


def test_running_trust_server_is_switched_over_without_a_restart(own_server: Path, tmp_path: Path) -> None:
    first = embedded_postgres.start()
    make_trust_folder(own_server)
    embedded_postgres._run(["pg_ctl", "reload", "-D", str(first.data_dir)])
    time.sleep(0.5)  # the postmaster rereads pg_hba.conf on SIGHUP, asynchronously
    assert not login_without_password_refused(first, tmp_path)  # the old open door
    server = embedded_postgres.start()
    assert server.pid == first.pid
    time.sleep(0.5)
    assert_password_only(server, tmp_path)


def test_missing_password_file_of_a_stopped_server_gets_a_new_password(own_server: Path, tmp_path: Path) -> None:
    embedded_postgres.start()
    old = embedded_postgres.password_file().read_text()
    embedded_postgres.stop()
    embedded_postgres.password_file().unlink()
    server = embedded_postgres.start()
    assert embedded_postgres.password_file().read_text() != old
    assert_password_only(server, tmp_path)

