"""Sync status: per district, the last successful landing load and state build, and how stale the state is.

`sync_status_rows()` reads landing.load_batch, landing.load_failure and state.model_build (written by
dbt's district_replace hooks) and is what `attendance-sync status` prints. The `sync_status` asset
shows the same table in the UI, with an asset check that warns when a district's state data is older
than ATTENDANCE_STALE_AFTER_HOURS (default 192 h: the weekly resync plus a day) and fails when a
district has never been synced. A run-status sensor refreshes it after every successful run.

"State data as of" is when the oldest landing load that any of the district's state tables was built
from started: the state holds nothing older than what the district had then.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from orchestration.districts.registry import load_registry
from orchestration.warehouse import database

STALE_AFTER_VARIABLE = "ATTENDANCE_STALE_AFTER_HOURS"
DEFAULT_STALE_AFTER_HOURS = 192.0
COLUMNS = ("district", "name", "last_load", "last_load_failure", "last_build", "state_data_as_of", "stale_for",
           "models_built", "models_behind", "aggregation_as_of")

_STATUS_SQL = """
with registry (district_code, name, position) as (
    select * from unnest(%(codes)s::text[], %(names)s::text[], %(positions)s::int[])
),
loads as (
    select district_code, max(batch_id) as last_batch_id, max(committed_at) as last_load_at
    from landing.load_batch group by district_code
),
failures as (
    select district_code, max(failed_at) as last_failure_at from landing.load_failure group by district_code
),
builds as (
    select build.district_code, max(build.built_at) as last_build_at, count(*) as models_built,
           min(batch.started_at) as data_as_of, bool_or(build.landing_batch_id is null) as never_loaded,
           count(*) filter (where coalesce(build.landing_batch_id, 0) < coalesce(loads.last_batch_id, 0))
               as models_behind,
           max(build.as_of_date) filter (where build.model_name = 'att_day_aggregation') as aggregation_as_of
    from state.model_build build
    left join landing.load_batch batch on batch.batch_id = build.landing_batch_id
    left join loads on loads.district_code = build.district_code
    group by build.district_code
),
districts as (
    select district_code, name, position from registry
    union all
    select district_code, null, 1000000 from loads where district_code <> all(%(codes)s::text[])
)
select d.district_code, d.name, loads.last_load_at,
       case when failures.last_failure_at > coalesce(loads.last_load_at, '-infinity') then failures.last_failure_at end,
       builds.last_build_at, case when builds.never_loaded then null else builds.data_as_of end,
       coalesce(builds.models_built, 0), coalesce(builds.models_behind, 0), builds.aggregation_as_of, now()
from districts d
left join loads using (district_code)
left join failures using (district_code)
left join builds using (district_code)
order by d.position, d.district_code
"""


def stale_after() -> dt.timedelta:
    return dt.timedelta(hours=float(os.environ.get(STALE_AFTER_VARIABLE, DEFAULT_STALE_AFTER_HOURS)))


def format_age(age: dt.timedelta | None) -> str:
    if age is None:
        return "never synced"
    minutes = int(age.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"{days}d {hours}h" if days else f"{hours}h {minutes}m" if hours else f"{minutes}m"


def _tables_exist(conn: Any) -> bool:
    row = conn.execute("select to_regclass('landing.load_batch') is not null and "
                       "to_regclass('landing.load_failure') is not null and "
                       "to_regclass('state.model_build') is not null").fetchone()
    return bool(row and row[0])


def sync_status_rows() -> list[dict[str, Any]]:
    """One dict per district (registry order, then districts only landing knows), keys as in COLUMNS.

    `in_registry` is false for a district whose data the state still holds although the registry file no
    longer lists it (shown as "removed from registry"; retire it with `attendance-sync districts retire`).

    Times are timezone-aware datetimes (None when it never happened); `stale_for` is a timedelta (None
    when the state holds no data of the district) and `stale` says whether it exceeds the threshold.
    """
    registry = load_registry()
    with database.connect(autocommit=True) as conn:
        if not _tables_exist(conn):
            return [dict.fromkeys(COLUMNS) | {"district": d.code, "name": d.name, "models_built": 0,
                                              "models_behind": 0, "in_registry": True, "stale": True}
                    for d in registry]
        rows = conn.execute(_STATUS_SQL, {
            "codes": [d.code for d in registry], "names": [d.name for d in registry],
            "positions": list(range(len(registry)))}).fetchall()
    limit = stale_after()
    result = []
    listed = {d.code for d in registry}
    for code, name, last_load, failure, last_build, data_as_of, built, behind, aggregation_as_of, now in rows:
        age = now - data_as_of if data_as_of else None
        # A district removed from the registry is no longer built, so it is not "stale": it is not current.
        current = code in listed
        result.append({"district": code, "name": name, "last_load": last_load, "last_load_failure": failure,
                       "last_build": last_build, "state_data_as_of": data_as_of, "stale_for": age,
                       "models_built": int(built), "models_behind": int(behind),
                       "aggregation_as_of": aggregation_as_of, "in_registry": current,
                       "stale": current and (age is None or age > limit)})
    return result


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.timedelta):
        return format_age(value)
    return str(value)


REMOVED = "removed from registry"


def _district_cell(row: dict[str, Any]) -> str:
    return row["district"] if row.get("in_registry", True) else f"{row['district']} ({REMOVED})"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table for the terminal."""
    headers = ["district", "last load", "last build", "state data as of", "stale for", "models", "behind",
               "aggregation as of", "last failure"]
    keys = ["district", "last_load", "last_build", "state_data_as_of", "stale_for", "models_built", "models_behind",
            "aggregation_as_of", "last_load_failure"]
    body = [[_district_cell(row) if k == "district" else _cell(row[k]) if k != "stale_for"
             else format_age(row[k]) + (" STALE" if row["stale"] else "") for k in keys] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in body]
    return "\n".join(lines)


def format_markdown(rows: list[dict[str, Any]]) -> str:
    header = ("| district | last load | last build | state data as of | stale for | models behind |\n"
              "|---|---|---|---|---|---|")
    lines = [f"| {_district_cell(r)} | {_cell(r['last_load'])} | {_cell(r['last_build'])} | "
             f"{_cell(r['state_data_as_of'])} | {format_age(r['stale_for'])}{' **stale**' if r['stale'] else ''} | "
             f"{r['models_behind']} |" for r in rows]
    return "\n".join([header, *lines])
