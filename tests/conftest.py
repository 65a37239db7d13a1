"""Shared fixtures: every test session uses its own embedded PostgreSQL, every test its own databases.

The embedded server of the test session lives in `<ATTENDANCE_HOME or .local>/test-server` on its own port,
so running the tests never touches the demo warehouse.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestration.districts.registry import District, DistrictSource
from orchestration.warehouse import database
from tests.support.districts import create_district_database
from tests.support.warehouse import unique_name


def pytest_configure(config: pytest.Config) -> None:
    if not any(os.environ.get(name) for name in (database.URL_VARIABLE, *database.PG_VARIABLES)):
        base = Path(os.environ.get("ATTENDANCE_HOME", Path(__file__).resolve().parent.parent / ".local"))
        os.environ["ATTENDANCE_HOME"] = str(base / "test-server")
        os.environ.setdefault("ATTENDANCE_TEST_PORT", "54339")
        os.environ["ATTENDANCE_EMBEDDED_PORT"] = os.environ["ATTENDANCE_TEST_PORT"]


@pytest.fixture
def state_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty state database for one test, used by every `database.connect()` in it."""
    name = unique_name("test_state")
    settings = database.ensure_server()
    database.ensure_database(name, settings)
    monkeypatch.setenv("ATTENDANCE_STATE_DATABASE", name)
    monkeypatch.setenv("ATTENDANCE_REGISTRY", str(tmp_path / "districts.yml"))
    yield name
    database.drop_database(name, settings)


@pytest.fixture
def make_district() -> Iterator[Callable[..., District]]:
    """Creates small district databases (see tests/support/districts.py) and drops them afterwards."""
    created: list[str] = []

    def factory(code: str, **options: object) -> District:
        name = unique_name(f"district_{code.lower()}")
        created.append(name)
        create_district_database(name, **options)  # type: ignore[arg-type]
        return District(code=code, name=f"District {code}", source=DistrictSource("database", database=name))

    yield factory
    for name in created:
        database.drop_database(name)

