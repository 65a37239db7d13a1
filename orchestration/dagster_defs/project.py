"""The dbt project handle that the Dagster asset graph is built from.

The asset graph comes from dbt's manifest (`dbt_project/target/manifest.json`), which the project's own
build step prepares with `dbt parse` (`make manifest`). Every entry point (the UI's code server and run
workers, the CLI, tests, `dagster definitions validate`) goes through `ensure_manifest()`, which parses
only when the manifest is missing or older than a file of the dbt project: a model added or changed is
never silently missing from the graph, and an unchanged project is not re-parsed by every run worker
(which dagster-dbt's `prepare_if_dev` would do under `dagster dev`).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from dagster_dbt import DbtProject

from orchestration.dbt.runner import dbt_executable
from orchestration.settings import DBT_PROFILES_DIR, DBT_PROJECT_DIR

# Files whose change changes the manifest.
_SOURCE_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".md"}
_SOURCE_FOLDERS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")


@functools.cache
def dbt_project() -> DbtProject:
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROFILES_DIR)


def _newest_source_mtime(project_dir: Path) -> float:
    newest = (project_dir / "dbt_project.yml").stat().st_mtime
    for folder in _SOURCE_FOLDERS:
        for path in (project_dir / folder).rglob("*"):
            if path.suffix in _SOURCE_SUFFIXES and path.is_file():
                newest = max(newest, path.stat().st_mtime)
    return newest


def manifest_is_stale(project: DbtProject | None = None) -> bool:
    project = project or dbt_project()
    manifest = project.manifest_path
    return not manifest.exists() or manifest.stat().st_mtime < _newest_source_mtime(project.project_dir)


def ensure_manifest() -> Path:
    """Run `dbt parse` when the manifest is missing or stale; return its path.

    Processes that load the definitions at the same time (webserver, daemon, run workers, tests) take
    turns on a file lock, and the second one finds the manifest fresh.
    """
    project = dbt_project()
    if not manifest_is_stale(project):
        return project.manifest_path
    target = project.project_dir / project.target_path
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest_is_stale(project):
            env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
            result = subprocess.run(
                [dbt_executable(), "parse", "--quiet", "--profiles-dir", str(project.profiles_dir),
                 "--target-path", str(project.target_path)],
                cwd=project.project_dir, env=env, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not project.manifest_path.exists():
                raise RuntimeError(f"dbt parse failed in {project.project_dir}:\n{result.stdout}{result.stderr}")
    return project.manifest_path


@functools.cache
def _load_manifest(path: str, mtime: float) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def manifest() -> dict[str, Any]:
    """The parsed manifest (cached per file version)."""
    path = ensure_manifest()
    return _load_manifest(str(path), path.stat().st_mtime)
