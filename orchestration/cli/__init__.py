"""`attendance-sync`: the command line for operators and engineers."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from orchestration.child_processes import Stopped, stop_on_signals
from orchestration.cli import errors as cli_errors
from orchestration.settings import local_dir
from orchestration.warehouse.run_origin import ORIGIN_VARIABLE, cli_origin

Handler = Callable[[argparse.Namespace], int]


def _codes(values: Sequence[str] | None) -> list[str] | None:
    """District codes from repeated flags and/or comma lists (`--districts D01,D03`)."""
    if not values:
        return None
    return [code.strip() for value in values for code in value.split(",") if code.strip()]


def _whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type for a bounded whole number, so a bad count is refused before anything runs."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if number < minimum or (maximum is not None and number > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"{number} is out of range (must be {bounds})")
        return number

    return parse


def _scale(value: str) -> float:
    """An argparse type for the benchmark's scale: a number above 0, at most 1."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"{number:g} is out of range (must be above 0 and at most 1)")
    return number


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None


def cmd_db(args: argparse.Namespace) -> int:
    from orchestration.warehouse import database, embedded_postgres

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
        hint = database.passfile_hint(settings)
        if hint:
            print(f"the superuser's password is in a pgpass file; for psql and dbt: {hint}")
        print(f"connect with: psql {settings.url()}")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from orchestration.districts.admin import sync_registry_file
    from orchestration.districts.registry import select_districts
    from orchestration.landing.guard import FLAG
    from orchestration.landing.load import load_districts
    from orchestration.warehouse.rights import writable_districts
    from orchestration.warehouse.writer_lock import state_writer_lock

    districts = select_districts(writable_districts("run a load", _codes(args.district)))
    # A state server that cannot be reached or is lost ends in cli_errors' one message.
    with state_writer_lock("attendance-sync load"):
        sync_registry_file()  # which districts are current, from the whole registry file
        results = load_districts(districts, allow_mass_delete=f"flag {FLAG}" if args.allow_mass_delete else None)
    for result in results:
        print(result.describe())
    failed = [r.district_code for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} district load(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from orchestration.demo import data as demo_data
    from orchestration.districts.registry import load_registry, write_registry

    if args.districts is not None:
        districts = demo_data.demo_registry(args.districts)
    else:
        districts = [d for d in load_registry() if d.source.kind == "database"]
    defaults = demo_data.DemoSize()
    size = demo_data.DemoSize(
        districts=len(districts),
        schools_per_district=args.schools or defaults.schools_per_district,
        students_per_district=args.students or defaults.students_per_district,
        end_year=args.end_year, today=args.today, seed=args.seed)
    size.validate()  # a bad size is refused before the demo registry is overwritten
    if args.districts is not None:
        path = local_dir() / "demo" / "districts.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_registry(path, districts)
        print(f"wrote a registry of {args.districts} demo districts to {path}; "
              f"use it with ATTENDANCE_REGISTRY={path} or --registry {path}")
    summary = demo_data.generate_demo(districts, size)
    print(summary.describe())
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from orchestration.demo import simulate
    from orchestration.demo.simulate import as_of_for
    from orchestration.districts.registry import load_registry

    districts = [d for d in load_registry() if d.source.kind == "database"]
    result = simulate.run_simulation(districts, args.days, seed=args.seed)
    print(result.describe())
    # The clock stands at the morning of the next school day; the day just simulated is the as-of date.
    as_of = as_of_for(result.today)
    print(f"simulated date: {as_of.isoformat()} (build with --as-of-date {as_of.isoformat()})")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from orchestration.dbt.runner import run_dbt
    from orchestration.districts.admin import sync_registry_file
    from orchestration.warehouse.rights import use_district_dbt_role, writable_districts
    from orchestration.warehouse.writer_lock import state_writer_lock

    districts = writable_districts(f"run {args.command}", _codes(args.districts))
    if use_district_dbt_role(f"run {args.command}", full_refresh=args.full_refresh):
        print(f"district-level run for {', '.join(districts or [])}: state tables only; the reports are "
              "rebuilt by the next state-level build")
    with state_writer_lock(f"attendance-sync build {args.command}"):
        sync_registry_file()  # builds only the districts the registry file lists now
        result = run_dbt([args.command, *(["--select", args.select] if args.select else [])],
                         districts=districts, as_of_date=args.as_of_date,
                         full_refresh=args.full_refresh)
    print(result.stdout.rstrip())
    if not result.success:
        print(f"attendance-sync: {result.failure_message}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestration.demo.run import run_demo

    return run_demo(as_of_date=args.as_of_date)


def cmd_rights(args: argparse.Namespace) -> int:
    from orchestration.warehouse import rights as tool_rights

    if args.action == "create-login":
        from orchestration.warehouse.logins import cli_create_login

        return cli_create_login(args.user, args.right, args.password_env)
    districts = _codes(args.district)
    if args.action == "grant" and districts:
        tool_rights.grant_districts(args.user, args.right, districts)
    elif args.action == "grant":
        tool_rights.grant(args.user, args.right)
    elif args.action == "revoke":
        if not districts:
            tool_rights.revoke(args.user, args.right)
        tool_rights.revoke_districts(args.user, args.right, districts)
    print(tool_rights.show(args.user).describe())
    return 0


def cmd_resync(args: argparse.Namespace) -> int:
    from orchestration.dagster_defs.launch import launch_resync

    return launch_resync(_codes(args.districts), _codes(args.objects), args.check_dependencies,
                         as_of_date=args.as_of_date, allow_mass_delete=args.allow_mass_delete)


def cmd_refresh_aggregation(args: argparse.Namespace) -> int:
    from orchestration.dagster_defs.launch import launch_refresh_aggregation

    return launch_refresh_aggregation(_codes(args.districts), as_of_date=args.as_of_date)


def cmd_status(args: argparse.Namespace) -> int:
    from orchestration.dagster_defs.launch import print_sync_status

    return print_sync_status()


def cmd_ui(args: argparse.Namespace) -> int:
    from orchestration.dagster_defs.launch import run_ui

    return run_ui(host="127.0.0.1", port=args.port)


def cmd_districts(args: argparse.Namespace) -> int:
    from orchestration.districts.admin import cmd_districts as run

    return run(args.action, args.code, args.yes)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from orchestration.benchmark.report import run_benchmark

    return run_benchmark(size_name=args.size, sections=args.section, out_dir=Path(args.out), scale=args.scale)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attendance-sync",
        description="Keep the State Edition true: load districts into landing, build the state tables with dbt.")
    parser.add_argument("--registry", help="district registry file (default: $ATTENDANCE_REGISTRY or districts.yml)")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an unexpected error (also ATTENDANCE_DEBUG=1)")
    commands = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        # Also after the command name; SUPPRESS keeps a --debug given before it.
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return sub

    db = add("db", cmd_db, "Manage the embedded PostgreSQL server (used when no PG* settings are set).")
    db.add_argument("action", choices=["start", "stop", "status"])

    load = add("load", cmd_load, "Copy district tables into landing, one district at a time, atomically.")
    load.add_argument("--district", action="append", metavar="CODE",
                      help="district code (repeat or comma-separate; default: every registered district)")
    load.add_argument("--allow-mass-delete", action="store_true",
                      help="allow a load to flag more than the limit of a table's rows deleted (recorded)")

    demo_data = add("demo-data", cmd_demo_data,
                    "Create realistic demo district databases (deterministic from a seed).")
    demo_data.add_argument("--districts", type=_whole_number(1, 99),
                           help="number of districts, 1 to 99 (writes a demo registry)")
    demo_data.add_argument("--schools", type=_whole_number(1), help="schools per district")
    demo_data.add_argument("--students", type=_whole_number(1, 40_000), help="students per district")
    demo_data.add_argument("--end-year", type=int, help="school year by its end year (default: the current one)")
    demo_data.add_argument("--today", type=_date, help="the generator's today (default: today)")
    demo_data.add_argument("--seed", type=_whole_number(0), default=42)

    simulate = add("simulate", cmd_simulate,
                   "Advance the demo's simulated clock by N school days, applying each day's district activity.")
    simulate.add_argument("--days", type=_whole_number(0), required=True,
                          help="school days to simulate (0: only print the simulated date)")
    simulate.add_argument("--seed", type=_whole_number(0),
                          help="seed for the simulated activity (default: the demo's seed)")

    build = add("build", cmd_build, "Run dbt (build, run or test) on the state models.")
    build.add_argument("command", nargs="?", default="build", choices=["build", "run", "test"])
    build.add_argument("--select", help="dbt selector, e.g. +att_day_aggregation")
    build.add_argument("--districts", action="append", metavar="CODES", help="only these districts (D01,D03)")
    build.add_argument("--as-of-date", type=_date,
                       help="the build's as-of date (default: yesterday in $ATTENDANCE_TIMEZONE)")
    build.add_argument("--full-refresh", action="store_true", help="recompute the aggregation from scratch")

    demo = add("demo", cmd_demo, "The demo resync: demo districts, landing load, dbt build, summary.")
    demo.add_argument("--as-of-date", type=_date, help="as-of date of the build (default: the demo's today)")

    rights = add("rights", cmd_rights, "Tool rights: Read queries state data; Write also runs loads and resyncs.")
    rights.add_argument("action", choices=["grant", "revoke", "show", "create-login"])
    rights.add_argument("user", help="an existing database login role")
    rights.add_argument("right", nargs="?", choices=["read", "write"], default="read")
    rights.add_argument("--password-env", metavar="VAR",
                        help="create-login: read the new login's password from this environment variable "
                             "(default: a hidden prompt; never give a password on the command line)")
    rights.add_argument("--district", action="append", metavar="CODE",
                        help="district-level right over these districts only (repeat or comma-separate); "
                             "with revoke: take back only these districts")

    resync = add("resync", cmd_resync, "Resync selected districts and objects through Dagster (the run shows "
                 "in the UI's history); with --check-dependencies every parent object is resynced too.")
    resync.add_argument("--districts", action="append", metavar="CODES", help="D01,D03 (default: every district)")
    resync.add_argument("--objects", action="append", metavar="MODELS",
                        help="state models, e.g. att_day_aggregation (default: every object)")
    resync.add_argument("--check-dependencies", action="store_true", help="also resync every parent object")
    resync.add_argument("--allow-mass-delete", action="store_true",
                        help="allow the reload to flag more than the limit of a table's rows deleted (recorded)")
    resync.add_argument("--as-of-date", type=_date,
                        help="the build's as-of date (default: yesterday in $ATTENDANCE_TIMEZONE)")

    refresh = add("refresh-aggregation", cmd_refresh_aggregation,
                  "Attendance Aggregation Refresh through Dagster: recompute att_day_aggregation and its reports.")
    refresh.add_argument("--districts", action="append", metavar="CODES", help="D01,D03 (default: every district)")
    refresh.add_argument("--as-of-date", type=_date,
                         help="the build's as-of date (default: yesterday in $ATTENDANCE_TIMEZONE)")

    add("status", cmd_status, "Each district's last successful load and build, and how stale it is.")

    ui = add("ui", cmd_ui, "Start the Dagster UI (and daemon) on 127.0.0.1 against this warehouse.")
    ui.add_argument("--port", type=_whole_number(1, 65535), default=3000)

    districts = add("districts", cmd_districts, "The districts of the registry and of the state; `retire CODE` "
                    "deletes the data of a district removed from the registry (asks for confirmation).")
    districts.add_argument("action", choices=["list", "retire"])
    districts.add_argument("code", nargs="?", help="the district to retire")
    districts.add_argument("--yes", action="store_true", help="retire without asking")

    bench = add("benchmark", cmd_benchmark, "Measure load and build speed side by side; write a report.")
    bench.add_argument("--size", choices=["demo", "bie", "nevada"], default="demo")
    bench.add_argument("--scale", type=_scale, default=1.0,
                       help="multiply students and schools per district (e.g. 0.05: a small run of the same shape)")
    bench.add_argument("--section", action="append", help="only these sections (default: all)")
    bench.add_argument("--out", default="benchmark-reports", help="report folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every failure ends here in one line on stderr and a non-zero exit code
    (orchestration/cli/errors.py): 2 refused, 1 failed, 130 interrupted, 128+N stopped by signal N."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.registry:
        os.environ["ATTENDANCE_REGISTRY"] = str(Path(args.registry).resolve())
    # Every load and build this command makes records it as their origin (warehouse/run_origin.py); a
    # Dagster run it starts records its own run id instead.
    os.environ[ORIGIN_VARIABLE] = cli_origin(args.name)

    # SIGTERM (a scheduler, `timeout`) unwinds like Ctrl-C: children are stopped before the writer lock goes.
    stop_on_signals()
    try:
        cli_errors.check_settings()
        return int(args.handler(args))
    except Stopped as stop:
        print(f"{cli_errors.PROGRAM}: {args.name} {stop}; its child processes were stopped and any open "
              "transaction rolled back before it let go of the writer lock", file=sys.stderr)
        return stop.exit_code
    except (Exception, KeyboardInterrupt) as error:  # cli_errors decides what the user sees
        return cli_errors.report(error, args)


if __name__ == "__main__":
    sys.exit(main())
