"""No open door: every login needs a password, and passwords never leak into URLs, argv or messages."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import make_conninfo

from orchestration import settings
from orchestration.cli import main as cli_main
from orchestration.districts.registry import District, DistrictSource
from orchestration.districts.sources import scrub_password
from orchestration.landing.load import load_districts
from orchestration.warehouse import database, embedded_postgres
from orchestration.warehouse import rights as tool_rights
from orchestration.warehouse.logins import create_login
from tests.support.warehouse import unique_name

# Everything that used to break a password pasted into a URL or a conninfo string.
AWKWARD_PASSWORD = "p&port=54399 it's a \\ =sécret ünï 密"


def superuser_connect(password: str | None, tmp_path: Path) -> psycopg.Connection:
    server = database.ensure_server()
    # An empty pgpass file of our own: neither the project's nor ~/.pgpass may supply the password.
    nothing = tmp_path / "no-pgpass"
    nothing.touch(mode=0o600)
    options: dict[str, str] = {"passfile": str(nothing)}
    if password is not None:
        options["password"] = password
    return psycopg.connect(host=server.host, port=server.port, user=embedded_postgres.SUPERUSER, dbname="postgres",
                           connect_timeout=10, **options)


def test_a_login_without_the_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        superuser_connect(None, tmp_path)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        superuser_connect("guess", tmp_path)
    password = embedded_postgres.password_file().read_text().strip()
    with superuser_connect(password, tmp_path) as conn:
        rules = conn.execute("select type, auth_method, address from pg_hba_file_rules").fetchall()
        assert rules and {rule[1] for rule in rules} == {"scram-sha-256"}
        assert {rule[0] for rule in rules} == {"host"} and {rule[2] for rule in rules} == {"127.0.0.1"}
        assert conn.execute("show password_encryption").fetchone() == ("scram-sha-256",)
        verifier = conn.execute("select rolpassword from pg_authid where rolname = 'postgres'").fetchone()
        assert verifier is not None and verifier[0].startswith("SCRAM-SHA-256$")


def test_password_file_is_private_and_used_automatically(
        state_db: str, make_district: Callable[..., District], capsys: pytest.CaptureFixture[str]) -> None:
    home = settings.local_dir()
    for path in (embedded_postgres.password_file(), embedded_postgres.passfile()):
        assert path.parent == home
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = embedded_postgres.password_file().read_text().strip()
    assert len(password) >= 32
    [result] = load_districts([make_district("D01")])  # the CLI's own code path, with no password given
    assert result.ok, result.error
    assert cli_main(["db", "status"]) == 0
    out = capsys.readouterr()
    assert f"export PGPASSFILE={embedded_postgres.passfile()}" in out.out
    assert password not in out.out + out.err
    settings_now = database.connection_settings()
    assert password not in settings_now.conninfo() and "PGPASSWORD" not in settings_now.pg_environment()


def test_plain_dbt_command_works_with_only_pgpassfile(
        state_db: str, make_district: Callable[..., District], tmp_path: Path) -> None:
    """The README's dbt command from dbt_project/, with PGPASSFILE exported as `db start` says."""
    [result] = load_districts([make_district("D01")])
    assert result.ok, result.error
    server = database.ensure_server()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    # The test server's port and database stand in for the defaults the README's command relies on.
    env.update(PGPASSFILE=str(embedded_postgres.passfile()), PGPORT=str(server.port),
               ATTENDANCE_STATE_DATABASE=state_db, DBT_SEND_ANONYMOUS_USAGE_STATS="false")
    dbt = Path(settings.PROJECT_ROOT) / ".venv" / "bin" / "dbt"
    completed = subprocess.run(
        [str(dbt), "build", "--profiles-dir", "../profiles", "--select", "+att_day_aggregation",
         "--vars", "{districts: [D01], as_of_date: 2026-09-02}",
         "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")],
        cwd=settings.DBT_PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:]
    with database.connect() as conn:
        assert conn.execute("select count(*) > 0 from state.att_day_aggregation").fetchone() == (True,)


@pytest.fixture
def login_name(state_db: str) -> Iterator[str]:
    name = unique_name("login")
    yield name
    with database.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


def test_create_login_with_an_awkward_password(
        login_name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEW_LOGIN_PASSWORD", AWKWARD_PASSWORD)
    assert cli_main(["rights", "create-login", login_name, "read", "--password-env", "NEW_LOGIN_PASSWORD"]) == 0
    server = database.ensure_server()
    with psycopg.connect(host=server.host, port=server.port, user=login_name, password=AWKWARD_PASSWORD,
                         dbname=server.dbname, connect_timeout=10) as conn:
        assert conn.execute("select current_user").fetchone() == (login_name,)
        assert tool_rights.rights_of(conn) == {"read"}
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=server.host, port=server.port, user=login_name, password="p", dbname=server.dbname,
                        connect_timeout=10)
    assert cli_main(["rights", "create-login", login_name, "write", "--password-env", "NEW_LOGIN_PASSWORD"]) == 2
    monkeypatch.delenv("NEW_LOGIN_PASSWORD")
    assert cli_main(["rights", "create-login", login_name + "x", "read", "--password-env", "NEW_LOGIN_PASSWORD"]) == 2
    out = capsys.readouterr()
    assert "already exists" in out.err and "NEW_LOGIN_PASSWORD (--password-env) is not set" in out.err
    assert AWKWARD_PASSWORD not in out.out + out.err
    with database.connect() as conn:
        assert tool_rights.rights_of(conn, login_name) == {"read"}  # the refused second call changed nothing


def test_create_login_prompts_twice_and_refuses_a_mismatch(
        login_name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    typed = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(typed))
    assert cli_main(["rights", "create-login", login_name, "write"]) == 2
    assert "the two passwords differ" in capsys.readouterr().err
    with database.connect() as conn:
        assert conn.execute("select 1 from pg_roles where rolname = %s", (login_name,)).fetchone() is None


def district_by_url(district: District, user: str, password_env: str) -> District:
    server = database.ensure_server()
    assert district.source.database is not None
    url = f"postgresql://{user}@{server.host}:{server.port}/{district.source.database}?application_name=sis"
    return District(district.code, district.name, DistrictSource("url", url=url, password_env=password_env))


def test_district_password_with_any_characters_is_a_parameter(
        login_name: str, make_district: Callable[..., District], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create_login(login_name, "read", AWKWARD_PASSWORD)  # the district's own reader, with a password
    local = make_district("D01")
    assert local.source.database is not None
    with database.connect(local.source.database, autocommit=True) as conn:
        conn.execute(sql.SQL("grant select on all tables in schema public to {}").format(sql.Identifier(login_name)))
    remote = district_by_url(local, login_name, "D01_PASSWORD")
    monkeypatch.setenv("D01_PASSWORD", AWKWARD_PASSWORD)
    [result] = load_districts([remote])
    assert result.ok, result.error
    with database.connect() as conn:
        assert conn.execute("select count(*) from landing.attendance").fetchone() == (4,)

    # A wrong password, through the CLI: one clear message, no traceback, no password.
    wrong = AWKWARD_PASSWORD + " wrong"
    monkeypatch.setenv("D01_PASSWORD", wrong)
    registry = Path(os.environ["ATTENDANCE_REGISTRY"])
    assert remote.source.url is not None
    registry.write_text(yaml.safe_dump({"districts": [
        {"code": "D01", "source": {"url": remote.source.url, "password_env": "D01_PASSWORD"}}]}))
    assert cli_main(["load", "--district", "D01"]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "password authentication failed" in text and "Traceback" not in text
    for secret in (wrong, AWKWARD_PASSWORD, "sécret", "54399"):
        assert secret not in text


def test_connection_errors_never_show_the_password(monkeypatch: pytest.MonkeyPatch, state_db: str) -> None:
    """A URL from url_env that libpq cannot parse, with the password in it: the message hides it."""
    server = database.ensure_server()
    monkeypatch.setenv("D01_URL", f"postgresql://someone:{AWKWARD_PASSWORD}@{server.host}:{server.port}/x")
    district = District("D01", "D01", DistrictSource("url", url_env="D01_URL"))
    [result] = load_districts([district])
    assert not result.ok and result.error is not None
    assert "cannot reach the district database" in result.error
    for secret in (AWKWARD_PASSWORD, "sécret", "it's"):
        assert secret not in result.error


def test_scrub_password_hides_every_form_of_it() -> None:
    conninfo = make_conninfo("postgresql://sis@db/sis", password=AWKWARD_PASSWORD)
    message = f"a {AWKWARD_PASSWORD} b {quote(AWKWARD_PASSWORD, safe='')} c {quote_plus(AWKWARD_PASSWORD)} d"
    scrubbed = scrub_password(message, conninfo)
    assert scrubbed == "a *** b *** c *** d"


def test_create_login_by_a_user_without_the_privilege_is_one_clear_message(
        login_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    create_login(login_name, "write", AWKWARD_PASSWORD)
    server = database.ensure_server()
    other = login_name + "_other"
    with pytest.MonkeyPatch.context() as patch:  # undone before the fixtures' teardown connects as postgres
        for name, value in (("PGHOST", server.host), ("PGPORT", str(server.port)), ("PGDATABASE", server.dbname),
                            ("PGUSER", login_name), ("PGPASSWORD", AWKWARD_PASSWORD), ("OTHER_PASSWORD", "x y")):
            patch.setenv(name, value)
        assert cli_main(["rights", "create-login", other, "read", "--password-env", "OTHER_PASSWORD"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"attendance-sync: cannot create login {other}: permission denied to create role")
    assert "Traceback" not in err and AWKWARD_PASSWORD not in err
