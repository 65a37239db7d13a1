"""Every package imported by orchestration/ and tests/ is declared in pyproject.toml and pinned in the lock.

A package that is only installed as some other package's dependency (psutil, packaging and pydantic were)
disappears, or changes major version, the day that package stops needing it; declared, it is the project's
own requirement with its own bounds. The shipped code may only rely on the runtime dependencies; the tests
may also use the dev extras.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"orchestration", "tests"}


def imported_modules(folder: str) -> dict[str, set[str]]:
    """Top-level third-party module -> the files under folder that import it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def declared(*groups: str) -> dict[str, Requirement]:
    """The requirements of pyproject.toml: "runtime" ([project] dependencies) and/or optional groups."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts: list[str] = []
    for group in groups:
        texts += project["dependencies"] if group == "runtime" else project["optional-dependencies"][group]
    return {canonicalize_name(Requirement(text).name): Requirement(text) for text in texts}


def locked() -> dict[str, Version]:
    pins = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)$", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    return {canonicalize_name(name): Version(version) for name, version in pins}


def undeclared(folder: str, *groups: str) -> list[str]:
    """'module (distributions) imported by files' for each import of folder no declared requirement covers."""
    distributions = importlib.metadata.packages_distributions()
    requirements = declared(*groups)
    missing = []
    for module, files in sorted(imported_modules(folder).items()):
        providers = {canonicalize_name(name) for name in distributions.get(module, [module])}
        if not providers & requirements.keys():
            missing.append(f"{module} ({', '.join(sorted(providers))}) imported by {', '.join(sorted(files))}")
    return missing


def test_orchestration_imports_are_runtime_dependencies() -> None:
    assert undeclared("orchestration", "runtime") == []


def test_test_imports_are_declared() -> None:
    assert undeclared("tests", "runtime", "dev") == []


@pytest.mark.parametrize("group", ["runtime", "dev"])
def test_lock_pins_every_declared_package_within_its_bounds(group: str) -> None:
    pins = locked()
    outside = [f"{name}: {requirement} but the lock has {pins.get(name)}"
               for name, requirement in declared(group).items()
               if name not in pins or not requirement.specifier.contains(pins[name], prereleases=True)]
    assert outside == []
