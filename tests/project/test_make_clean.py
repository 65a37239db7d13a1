"""`make clean` deletes build output only; the warehouse data (.local/) goes only with its own, named target."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from orchestration.settings import PROJECT_ROOT

BUILD_OUTPUT = ["dbt_project/target/manifest.json", "dbt_project/logs/dbt.log", ".pytest_cache/v/x",
                "test-artifacts/trace.zip", "orchestration/__pycache__/cli.cpython-311.pyc"]
WAREHOUSE = [".local/pgdata/PG_VERSION", ".local/dagster/dagster.yaml", ".local/demo/districts.yml"]


def make(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def test_clean_recipe_never_names_the_warehouse() -> None:
    recipe = make("-n", "clean")
    assert recipe.returncode == 0, recipe.stderr
    assert ".local" not in recipe.stdout and "db stop" not in recipe.stdout
    assert "dbt_project/target" in recipe.stdout


def test_clean_keeps_the_warehouse_and_clean_warehouse_data_deletes_it(tmp_path: Path) -> None:
    shutil.copy(PROJECT_ROOT / "Makefile", tmp_path / "Makefile")
    for name in BUILD_OUTPUT + WAREHOUSE:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "tests").mkdir()
    cleaned = make("clean", cwd=tmp_path)
    assert cleaned.returncode == 0, cleaned.stderr
    assert not any((tmp_path / name).exists() for name in BUILD_OUTPUT)
    assert all((tmp_path / name).exists() for name in WAREHOUSE)

    deleted = make("clean-warehouse-data", cwd=tmp_path)  # no .venv here: there is no server to stop
    assert deleted.returncode == 0, deleted.stderr
    assert "deleting the warehouse data in .local/" in deleted.stdout
    assert not (tmp_path / ".local").exists()
