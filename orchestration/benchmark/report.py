"""`attendance-sync benchmark`: speed and memory measured side by side in one run, written as a report.

These machines are shared and noisy, so every figure that has a target is a ratio between two things
timed in the same run (the loader against a plain COPY of the same rows; the dbt model against a
hand-written reference statement), never an absolute time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from orchestration.benchmark.builds import compare_builds
from orchestration.benchmark.loads import compare_load_with_plain_copy
from orchestration.benchmark.sync import compare_syncs
from orchestration.dagster_defs.launch import benchmark_overhead
from orchestration.demo import data as demo_data
from orchestration.demo.calendar import district_calendar
from orchestration.demo.data import read_clock
from orchestration.demo.simulate import as_of_for, simulate_days
from orchestration.districts.registry import District, DistrictSource, write_registry
from orchestration.settings import local_dir
from orchestration.warehouse import database
from orchestration.warehouse.embedded_postgres import data_dir

SIZES = ("demo", "bie", "nevada")
# Nevada's end-to-end targets (seconds), which apply to the full size only (scale 1).
NEVADA_TARGETS = {"weekly resync": 600.0, "nightly": 60.0}

BENCH_STATE_DATABASE = "attendance_bench"


@dataclass
class Section:
    name: str
    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def target(self, name: str, value: float, limit: float, unit: str = "x") -> None:
        self.targets.append({"target": name, "value": round(value, 3), "limit": limit, "unit": unit,
                             "met": value <= limit})


@dataclass
class BenchContext:
    size_name: str
    districts: list[District]
    registry_path: Path
    scale: float = 1.0
    report: list[Section] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def data_dir_bytes() -> int:
    """Size of the embedded server's data folder (0 when the warehouse is another server)."""
    folder = data_dir()
    total = 0
    if folder.is_dir():
        for path in folder.rglob("*"):
            with suppress(OSError):
                if path.is_file():
                    total += path.stat().st_size
    return total


def free_disk_bytes() -> int:
    folder = data_dir()
    return psutil.disk_usage(str(folder if folder.is_dir() else local_dir())).free


class MemorySampler:
    """Peak resident memory of this process tree (dbt included) and of the PostgreSQL server, sampled
    every 0.2 s; and the least free disk seen, sampled every second."""

    def __init__(self) -> None:
        self.peak_client = 0
        self.peak_server = 0
        self.least_free = free_disk_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        ticks = 0
        while not self._stop.is_set():
            client = server = 0
            for proc in [me, *me.children(recursive=True)]:
                with suppress(psutil.Error):
                    client += proc.memory_info().rss
            for proc in psutil.process_iter(["name"]):
                if proc.info["name"] == "postgres":
                    with suppress(psutil.Error):
                        server += proc.memory_info().rss - proc.memory_info().shared
            self.peak_client = max(self.peak_client, client)
            self.peak_server = max(self.peak_server, server)
            ticks += 1
            if ticks % 5 == 0:
                with suppress(OSError):
                    self.least_free = min(self.least_free, free_disk_bytes())
            self._stop.wait(0.2)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def timed(disk: bool = False) -> Iterator[dict[str, float]]:
    """Yields a dict that holds `seconds`, `peak_client_mb` and `peak_server_mb` once the block ends; with
    `disk`, also the data folder's size after the block and the peak disk the block used: how far the free
    space fell below what it was at the start (other users of the disk count too, on a shared machine)."""
    result: dict[str, float] = {}
    free_before = free_disk_bytes() if disk else 0
    with MemorySampler() as sampler:
        started = time.perf_counter()
        yield result
        result["seconds"] = round(time.perf_counter() - started, 3)
    result["peak_client_mb"] = round(sampler.peak_client / 2**20, 1)
    result["peak_server_mb"] = round(sampler.peak_server / 2**20, 1)
    if not disk:
        return
    result["peak_disk_used_gb"] = round(max(0, free_before - min(sampler.least_free, free_disk_bytes())) / 2**30, 2)
    result["data_dir_gb"] = round(data_dir_bytes() / 2**30, 2)
    result["free_disk_gb"] = round(free_disk_bytes() / 2**30, 1)


def timed_with_disk() -> AbstractContextManager[dict[str, float]]:
    return timed(disk=True)


def bench_districts(count: int, size_name: str) -> list[District]:
    return [District(code=f"D{i:02d}", name=f"Benchmark district {i:02d}",
                     source=DistrictSource("database", database=f"bench_{size_name}_d{i:02d}"))
            for i in range(1, count + 1)]


def bench_size(size_name: str, scale: float = 1.0) -> Any:
    """The demo size, or the BIE-like or Nevada-like size with today on its last school day, so that the
    year is all but complete (about 8 million student-days for BIE) and one simulated day still adds a day
    for every student. `scale` multiplies students and schools per district (the shape stays)."""

    if size_name == "demo":
        size = demo_data.DemoSize()
    else:
        size = demo_data.BIE_SIZE if size_name == "bie" else demo_data.nevada_size()
        end_year = size.resolved_end_year()
        last_day = max(district_calendar(end_year, size.seed, index).last_day
                       for index in range(1, size.districts + 1))
        size = replace(size, today=last_day)
    return size if scale == 1.0 else size.scaled(scale)


def section_generate(ctx: BenchContext) -> Section:
    size = bench_size(ctx.size_name, ctx.scale)
    section = Section("generate", "Demo district generation")
    with timed_with_disk() as timing:
        summary = demo_data.generate_demo(ctx.districts, size)
    totals: dict[str, int] = {}
    for counts in summary.row_counts.values():
        for table, count in counts.items():
            totals[table] = totals.get(table, 0) + count
    ctx.facts.update({"size": size.__dict__ | {"today": str(summary.today)}, "source_rows": totals,
                      "simulated_today": str(summary.today)})
    students = [size.students_of(i) for i in range(1, size.districts + 1)]
    section.rows.append({"step": f"generate {len(ctx.districts)} districts ({sum(students):,} students, "
                                 f"largest {max(students):,})", **timing, "rows": sum(totals.values())})
    section.notes.append(f"{demo_data.WORKERS} districts at a time, the largest first; one district is one "
                         "transaction on one core, so the largest district sets the floor")
    return section


def section_load(ctx: BenchContext) -> Section:
    return compare_load_with_plain_copy(ctx.districts, Section("load", "Landing load against a plain COPY"), timed)


def section_build(ctx: BenchContext) -> Section:
    as_of = as_of_for(read_clock(ctx.districts).today)
    section = Section("build", f"dbt builds side by side (as of {as_of})")
    return compare_builds(ctx.districts, section, timed, as_of,
                          lambda: as_of_for(simulate_days(ctx.districts, 1)))


def section_dagster(ctx: BenchContext) -> Section:
    """The same two-district resync as plain loader + dbt build and as a Dagster run, side by side."""

    os.environ.setdefault("DAGSTER_HOME", str(local_dir() / "bench" / "dagster"))
    section = Section("dagster", "Running through Dagster against plain loader + dbt build")
    two = [d.code for d in ctx.districts[:2]]
    for objects, check in ((["att_day_aggregation"], False), (["att_day_aggregation"], True)):
        figures = benchmark_overhead(two, objects, check_dependencies=check)
        section.rows.append({"selection": f"{', '.join(objects)}{' with Check Dependencies' if check else ''}",
                             "districts": ", ".join(two), **figures})
    section.notes.append("both paths reload the districts' landing and run one dbt build of the same selection; "
                         "dagster_first_s is the first run in the process, which also builds the definitions")
    return section


def section_sync(ctx: BenchContext) -> Section:
    as_of = as_of_for(read_clock(ctx.districts).today)
    section = Section("sync", f"End to end: first sync, identical reload, weekly resync, nightly (as of {as_of})")
    targets = NEVADA_TARGETS if ctx.size_name == "nevada" and ctx.scale == 1.0 else None
    return compare_syncs(ctx.districts, section, timed_with_disk, as_of,
                         lambda: as_of_for(simulate_days(ctx.districts, 1)), targets)


SECTIONS: dict[str, Callable[[BenchContext], Section]] = {
    "generate": section_generate,
    "load": section_load,
    "build": section_build,
    "dagster": section_dagster,
    "sync": section_sync,
}
# The Nevada size runs only what its targets need: the side-by-side sections would take hours there.
DEFAULT_SECTIONS = {"nevada": ["generate", "sync"]}


def _markdown(ctx: BenchContext) -> str:
    scale = "" if ctx.scale == 1.0 else f" scaled by {ctx.scale:g}"
    lines = [f"# Benchmark report: {ctx.size_name} size{scale}", "",
             f"Run {dt.datetime.now().isoformat(timespec='seconds')} on {platform.node()} "
             f"({psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB), "
             f"{len(ctx.districts)} districts.", ""]
    if ctx.facts.get("source_rows"):
        lines += ["Source rows: " + ", ".join(f"{t} {n:,}" for t, n in ctx.facts["source_rows"].items()), ""]
    for section in ctx.report:
        lines += [f"## {section.title}", ""]
        if section.rows:
            keys = list(dict.fromkeys(k for row in section.rows for k in row))
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in section.rows]
            lines.append("")
        for target in section.targets:
            verdict = "met" if target["met"] else (
                f"NOT MET, {target['value'] / target['limit']:.1f}x the target" if target["limit"] else "NOT MET")
            lines.append(f"- **{target['target']}**: {target['value']}{target['unit']} "
                         f"(target at most {target['limit']}{target['unit']}): {verdict}")
        lines += [f"- {note}" for note in section.notes]
        lines.append("")
    return "\n".join(lines)


def run_benchmark(size_name: str, sections: list[str] | None, out_dir: Path, scale: float = 1.0) -> int:
    """Run the chosen sections (default all; Nevada: generation and the end-to-end syncs) against a
    benchmark warehouse of its own; write the report. The Nevada size drops its district databases and
    benchmark warehouse when it is done (they take most of the disk)."""

    size = bench_size(size_name, scale)
    chosen = sections or DEFAULT_SECTIONS.get(size_name, list(SECTIONS))
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    districts = bench_districts(size.districts, size_name)
    missing = [] if "generate" in chosen else missing_databases(districts)
    if missing:
        print(f"benchmark: the {size_name} district databases are not there ({missing[0]} is missing; the Nevada "
              f"size drops them after each run): add --section generate, or leave out --section", file=sys.stderr)
        return 2
    os.environ["ATTENDANCE_STATE_DATABASE"] = BENCH_STATE_DATABASE
    registry_path = local_dir() / "bench" / size_name / "districts.yml"
    registry_path.parent.mkdir(parents=True, exist_ok=True)
    write_registry(registry_path, districts)
    os.environ["ATTENDANCE_REGISTRY"] = str(registry_path)
    database.drop_database(BENCH_STATE_DATABASE)
    database.ensure_database(BENCH_STATE_DATABASE)
    ctx = BenchContext(size_name, districts, registry_path, scale)
    try:
        for name in SECTIONS:
            if name in chosen:
                print(f"benchmark: {name} ...", flush=True)
                ctx.report.append(SECTIONS[name](ctx))
    finally:
        if size_name == "nevada":
            drop_generated(districts)
    label = size_name if scale == 1.0 else f"{size_name}-x{scale:g}"
    out = out_dir / label
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(_markdown(ctx))
    (out / "report.json").write_text(json.dumps(
        {"size": size_name, "scale": scale, "facts": ctx.facts,
         "sections": [s.__dict__ for s in ctx.report]}, indent=2, default=str))
    print(_markdown(ctx))
    print(f"report written to {out / 'report.md'} and {out / 'report.json'}")
    return 0


def missing_databases(districts: list[District]) -> list[str]:
    """The district databases a benchmark without `generate` would read but which do not exist."""
    names = [str(district.source.database) for district in districts if district.source.database]
    with database.connect("postgres", autocommit=True) as conn:
        present = {row[0] for row in conn.execute("select datname from pg_database where datname = any(%s)",
                                                  (names,)).fetchall()}
    return [name for name in names if name not in present]


def drop_generated(districts: list[District]) -> None:
    """Drop the benchmark's district databases and warehouse, which only this run needed."""
    for district in districts:
        if district.source.database:
            database.drop_database(district.source.database)
    database.drop_database(BENCH_STATE_DATABASE)
