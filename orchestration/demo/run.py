"""`make demo`: the main job end to end on demo data: districts, landing load, dbt build, summary."""

from __future__ import annotations

import datetime as dt
import time

import psycopg
from psycopg import sql

from orchestration.dbt.runner import run_dbt
from orchestration.demo import data as demo_data
from orchestration.demo.simulate import as_of_for
from orchestration.districts.registry import load_registry
from orchestration.landing.load import load_districts
from orchestration.monitoring.report_headlines import report_headlines
from orchestration.warehouse import database
from orchestration.warehouse.writer_lock import state_writer_lock

# The Dagster daemon reports builds made outside Dagster (like this one) within a minute of starting.
UI_HINT = ("to see it in the Dagster UI: `make ui` (or `.venv/bin/attendance-sync ui`), then open "
           "http://127.0.0.1:3000/assets (Ctrl-C stops it)")
STATE_TABLES = ("district", "school", "calendar", "day", "period", "person", "enrollment", "attendance_excuse",
                "attendance", "att_day_aggregation")


def summary_table(conn: psycopg.Connection) -> str:
    """Rows per state table per district, and each district's chronic absence rate."""
    counts: dict[str, dict[str, int]] = {}
    for table in STATE_TABLES:
        for code, count in conn.execute(sql.SQL("select district_code, count(*) from state.{} group by 1").format(
                sql.Identifier(table))).fetchall():
            counts.setdefault(code, {})[table] = count
    # The figures the Dagster UI shows on the report assets (a student counts once per district).
    chronic = {h.scope: h.chronic_absence_rate for h in report_headlines(conn)}
    header = ["district", *STATE_TABLES, "chronic absence %"]
    rows = [[code, *[f"{counts[code].get(t, 0):,}" for t in STATE_TABLES],
             "-" if chronic.get(code) is None else str(chronic[code])]
            for code in sorted(counts)]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).rjust(widths[i]) for i, cell in enumerate(row)) for row in [header, *rows]]
    return "\n".join(lines)


def _lock_wait(message: str) -> None:
    """The writer lock's messages worth showing in the demo's output: only why it waits."""
    if message.startswith("waiting"):
        print("   " + message, flush=True)


def run_demo(as_of_date: dt.date | None = None) -> int:
    started = time.perf_counter()
    districts = [d for d in load_registry() if d.source.kind == "database"]
    print(f"1/3 generating {len(districts)} demo districts ...", flush=True)
    summary = demo_data.generate_demo(districts, demo_data.DemoSize(districts=len(districts)))
    print(summary.describe(), flush=True)
    print("2/3 loading them into landing ...", flush=True)
    with state_writer_lock("attendance-sync demo load", log=_lock_wait):
        results = load_districts(districts)
    for result in results:
        print("   " + result.describe(), flush=True)
    if not all(r.ok for r in results):
        return 1
    as_of = as_of_date or as_of_for(summary.today)
    print(f"3/3 dbt build of every state model, the aggregation and the reports (as of {as_of}) ...", flush=True)
    with state_writer_lock("attendance-sync demo build", log=_lock_wait):
        build = run_dbt(["build"], as_of_date=as_of)
    if not build.success:
        print(build.failure_message)
        return 1
    with database.connect() as conn:
        print()
        print(summary_table(conn))
    settings = database.connection_settings()
    print(f"\ndemo resync finished in {time.perf_counter() - started:.0f}s; the state database is {settings.url()}")
    hint = database.passfile_hint(settings)
    if hint:  # psql and a plain dbt command find the embedded server's password through it
        print(f"for psql or dbt by hand: {hint}")
    print(UI_HINT)
    return 0
