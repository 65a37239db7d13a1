"""`attendance-sync`: the command line for operators and engineers."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Handler = Callable[[argparse.Namespace], int]


def _codes(values: Sequence[str] | None) -> list[str] | None:
    """District codes from repeated flags and/or comma lists (`--districts D01,D03`)."""
    if not values:
        return None
    return [code.strip() for value in values for code in value.split(",") if code.strip()]


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None


def cmd_db(args: argparse.Namespace) -> int:
    from orchestration import database, embedded_postgres

    settings = database.connection_settings()
    if not settings.embedded:
        print(f"using the server from the environment ({settings.url()}); the embedded server is not used")
        return 0 if args.action == "status" else 1
    if args.action == "start":
        status = embedded_postgres.start()
        database.ensure_database(settings.dbname, settings)
    elif args.action == "stop":
        status = embedded_postgres.stop()
    else:
        status = embedded_postgres.status()
    print(status.describe())
    if status.running:
        print(f"connect with: psql {settings.url()}")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from orchestration.landing_load import load_districts
    from orchestration.registry import select_districts
    from orchestration.writer_lock import state_writer_lock

    districts = select_districts(_codes(args.district))
    with state_writer_lock("attendance-sync load"):
        results = load_districts(districts)
    for result in results:
        print(result.describe())
    failed = [r.district_code for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} district load(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from orchestration import demo_data
    from orchestration.registry import load_registry, write_registry
    from orchestration.settings import local_dir

    if args.districts is not None:
        districts = demo_data.demo_registry(args.districts)
        path = local_dir() / "demo" / "districts.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_registry(path, districts)
        print(f"wrote a registry of {args.districts} demo districts to {path}; "
              f"use it with ATTENDANCE_REGISTRY={path} or --registry {path}")
    else:
        districts = [d for d in load_registry() if d.source.kind == "database"]
    defaults = demo_data.DemoSize()
    size = demo_data.DemoSize(
        districts=len(districts),
        schools_per_district=args.schools or defaults.schools_per_district,
        students_per_district=args.students or defaults.students_per_district,
        end_year=args.end_year, today=args.today, seed=args.seed)
    summary = demo_data.generate_demo(districts, size)
    print(summary.describe())
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from orchestration import simulate
    from orchestration.registry import load_registry

    districts = [d for d in load_registry() if d.source.kind == "database"]
    result = simulate.run_simulation(districts, args.days, seed=args.seed)
    print(result.describe())
    # The clock stands at the morning of the next school day; the day just simulated is the as-of date.
    as_of = as_of_for(result.today)
    print(f"simulated date: {as_of.isoformat()} (build with --as-of-date {as_of.isoformat()})")
    return 0


def as_of_for(clock_today: dt.date) -> dt.date:
    """The as-of date of builds on demo data: the last day whose attendance has been taken."""
    return clock_today - dt.timedelta(days=1)


def cmd_build(args: argparse.Namespace) -> int:
    from orchestration.dbt_runner import run_dbt
    from orchestration.writer_lock import state_writer_lock

    with state_writer_lock(f"attendance-sync build {args.command}"):
        result = run_dbt([args.command, *(["--select", args.select] if args.select else [])],
                         districts=_codes(args.districts), as_of_date=args.as_of_date,
                         full_refresh=args.full_refresh)
    print(result.stdout.rstrip())
    if not result.success:
        print(result.failure_message, file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestration.demo_run import run_demo

    return run_demo(as_of_date=args.as_of_date)


def cmd_rights(args: argparse.Namespace) -> int:
    from orchestration import database, tool_rights

    if args.action == "grant":
        tool_rights.grant(args.user, args.right)
    elif args.action == "revoke":
        tool_rights.revoke(args.user, args.right)
    with database.connect() as conn:
        held = tool_rights.rights_of(conn, args.user)
    print(f"{args.user}: {', '.join(sorted(held)) or 'no rights'}")
    return 0


def cmd_resync(args: argparse.Namespace) -> int:
    from orchestration.dagster_launch import launch_resync

    return launch_resync(_codes(args.districts), _codes(args.objects), args.check_dependencies,
                         as_of_date=args.as_of_date)


def cmd_refresh_aggregation(args: argparse.Namespace) -> int:
    from orchestration.dagster_launch import launch_refresh_aggregation

    return launch_refresh_aggregation(_codes(args.districts), as_of_date=args.as_of_date)


def cmd_status(args: argparse.Namespace) -> int:
    from orchestration.dagster_launch import print_sync_status

    return print_sync_status()


def cmd_ui(args: argparse.Namespace) -> int:
    from orchestration.dagster_launch import run_ui

    return run_ui(host="127.0.0.1", port=args.port)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from orchestration.benchmark import run_benchmark

    return run_benchmark(size_name=args.size, sections=args.section, out_dir=Path(args.out))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attendance-sync",
        description="Keep the State Edition true: load districts into landing, build the state tables with dbt.")
    parser.add_argument("--registry", help="district registry file (default: $ATTENDANCE_REGISTRY or districts.yml)")
    commands = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    db = add("db", cmd_db, "Manage the embedded PostgreSQL server (used when no PG* settings are set).")
    db.add_argument("action", choices=["start", "stop", "status"])

    load = add("load", cmd_load, "Copy district tables into landing, one district at a time, atomically.")
    load.add_argument("--district", action="append", metavar="CODE",
                      help="district code (repeat or comma-separate; default: every registered district)")

    demo_data = add("demo-data", cmd_demo_data,
                    "Create realistic demo district databases (deterministic from a seed).")
    demo_data.add_argument("--districts", type=int, help="number of districts (writes a demo registry)")
    demo_data.add_argument("--schools", type=int, help="schools per district")
    demo_data.add_argument("--students", type=int, help="students per district")
    demo_data.add_argument("--end-year", type=int, help="school year by its end year (default: the current one)")
    demo_data.add_argument("--today", type=_date, help="the generator's today (default: today)")
    demo_data.add_argument("--seed", type=int, default=42)

    simulate = add("simulate", cmd_simulate,
                   "Advance the demo's simulated clock by N school days, applying each day's district activity.")
    simulate.add_argument("--days", type=int, required=True)
    simulate.add_argument("--seed", type=int, help="seed for the simulated activity (default: the demo's seed)")

    build = add("build", cmd_build, "Run dbt (build, run or test) on the state models.")
    build.add_argument("command", nargs="?", default="build", choices=["build", "run", "test"])
    build.add_argument("--select", help="dbt selector, e.g. +att_day_aggregation")
    build.add_argument("--districts", action="append", metavar="CODES", help="only these districts (D01,D03)")
    build.add_argument("--as-of-date", type=_date, help="the build's as-of date (default: today)")
    build.add_argument("--full-refresh", action="store_true", help="recompute the aggregation from scratch")

    demo = add("demo", cmd_demo, "The demo resync: demo districts, landing load, dbt build, summary.")
    demo.add_argument("--as-of-date", type=_date, help="as-of date of the build (default: the demo's today)")

    rights = add("rights", cmd_rights, "Tool rights: Read queries state data; Write also runs loads and resyncs.")
    rights.add_argument("action", choices=["grant", "revoke", "show"])
    rights.add_argument("user", help="an existing database login role")
    rights.add_argument("right", nargs="?", choices=["read", "write"], default="read")

    resync = add("resync", cmd_resync, "Resync selected districts and objects through Dagster (the run shows "
                 "in the UI's history); with --check-dependencies every parent object is resynced too.")
    resync.add_argument("--districts", action="append", metavar="CODES", help="D01,D03 (default: every district)")
    resync.add_argument("--objects", action="append", metavar="MODELS",
                        help="state models, e.g. att_day_aggregation (default: every object)")
    resync.add_argument("--check-dependencies", action="store_true", help="also resync every parent object")
    resync.add_argument("--as-of-date", type=_date, help="the build's as-of date (default: today)")

    refresh = add("refresh-aggregation", cmd_refresh_aggregation,
                  "Attendance Aggregation Refresh through Dagster: recompute att_day_aggregation and its reports.")
    refresh.add_argument("--districts", action="append", metavar="CODES", help="D01,D03 (default: every district)")
    refresh.add_argument("--as-of-date", type=_date, help="the build's as-of date (default: today)")

    add("status", cmd_status, "Each district's last successful load and build, and how stale it is.")

    ui = add("ui", cmd_ui, "Start the Dagster UI (and daemon) on 127.0.0.1 against this warehouse.")
    ui.add_argument("--port", type=int, default=3000)

    bench = add("benchmark", cmd_benchmark, "Measure load and build speed side by side; write a report.")
    bench.add_argument("--size", choices=["demo", "bie"], default="demo")
    bench.add_argument("--section", action="append", help="only these sections (default: all)")
    bench.add_argument("--out", default="benchmark-reports", help="report folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.registry:
        os.environ["ATTENDANCE_REGISTRY"] = str(Path(args.registry).resolve())
    from orchestration.child_processes import Stopped, stop_on_signals
    from orchestration.registry import RegistryError
    from orchestration.tool_rights import PermissionDenied
    from orchestration.writer_lock import WriterLockError
    from orchestration.writer_sessions import LockTimeoutSettingError

    # SIGTERM (a scheduler, `timeout`) unwinds like Ctrl-C: children are stopped before the writer lock goes.
    stop_on_signals()
    try:
        return int(args.handler(args))
    except (RegistryError, PermissionDenied, WriterLockError, LockTimeoutSettingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Stopped as stop:
        print(f"error: attendance-sync {args.name} {stop}; its child processes were stopped and any open "
              "transaction rolled back before it let go of the writer lock", file=sys.stderr)
        return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
