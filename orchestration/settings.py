"""Project paths and the environment variables that move them."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DBT_PROFILES_DIR = PROJECT_ROOT / "profiles"


def local_dir() -> Path:
    """The git-ignored folder for the embedded server, Dagster storage and demo state."""
    path = Path(os.environ.get("ATTENDANCE_HOME", PROJECT_ROOT / ".local")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def registry_path() -> Path:
    """The district registry file (one entry per district)."""
    return Path(os.environ.get("ATTENDANCE_REGISTRY", PROJECT_ROOT / "districts.yml")).resolve()
