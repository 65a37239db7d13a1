"""The default as-of date is the last complete day: yesterday in the state's time zone (ATTENDANCE_TIMEZONE,
passed to dbt as the var state_time_zone), never today, whose attendance is not all taken yet."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from orchestration.dagster_defs.dbt_assets import dbt_build_args
from orchestration.dbt import runner as dbt_runner
from orchestration.districts.registry import District
from orchestration.landing.load import load_districts
from orchestration.warehouse import database


def test_an_unknown_time_zone_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dbt_runner.TIME_ZONE_VARIABLE, "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="ATTENDANCE_TIMEZONE='Mars/Olympus_Mons' is not a known time zone"):
        dbt_runner.dbt_args(["build"])


def test_both_dbt_paths_pass_the_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dbt_runner.TIME_ZONE_VARIABLE, "Pacific/Honolulu")
    runner_args = dbt_runner.dbt_args(["build"])
    assert json.loads(runner_args[runner_args.index("--vars") + 1])["state_time_zone"] == "Pacific/Honolulu"
    dagster_args = dbt_build_args(districts=["D01"])
    assert json.loads(dagster_args[dagster_args.index("--vars") + 1])["state_time_zone"] == "Pacific/Honolulu"


# 26 hours apart: their local dates always differ, so only the zone reaching dbt explains both results.
FAR_EAST, FAR_WEST = "Pacific/Kiritimati", "Etc/GMT+12"


def yesterday_in(zone: str, now: datetime) -> date:
    return now.astimezone(ZoneInfo(zone)).date() - timedelta(days=1)


def build_as_of(zone: str, select: str, monkeypatch: pytest.MonkeyPatch) -> tuple[date, set[date]]:
    """Build without an as_of_date var in `zone`: the recorded as-of date, and yesterday there during the run."""
    monkeypatch.setenv(dbt_runner.TIME_ZONE_VARIABLE, zone)
    started = datetime.now(tz=UTC)
    build = dbt_runner.run_dbt(["run", "--select", select])
    assert build.success, build.failure_message
    finished = datetime.now(tz=UTC)
    with database.connect() as conn:
        recorded = conn.execute("select as_of_date from state.model_build "
                                "where model_name = 'att_day_aggregation' and district_code = 'D01'").fetchone()
    assert recorded is not None
    return recorded[0], {yesterday_in(zone, started), yesterday_in(zone, finished)}


def test_a_build_without_as_of_date_uses_yesterday_in_the_state_time_zone(
        state_db: str, make_district: Callable[..., District], monkeypatch: pytest.MonkeyPatch) -> None:
    district = make_district("D01")
    [loaded] = load_districts([district])
    assert loaded.ok, loaded.error
    east, expected_east = build_as_of(FAR_EAST, "+att_day_aggregation", monkeypatch)
    west, expected_west = build_as_of(FAR_WEST, "att_day_aggregation", monkeypatch)
    assert east in expected_east and west in expected_west
    assert east != west
