"""The embedded server's lifecycle, and that settings in the environment switch it off."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration import database, embedded_postgres
from orchestration.cli import main as cli_main


@pytest.fixture
def own_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A second embedded server in a temp folder on its own port, stopped afterwards."""
    home = tmp_path / "home"
    monkeypatch.setenv("ATTENDANCE_HOME", str(home))
    monkeypatch.setenv("ATTENDANCE_EMBEDDED_PORT", str(int(os.environ.get("ATTENDANCE_EMBEDDED_PORT", "54339")) + 1))
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
