"""The package layout keeps its direction: who may import whom inside orchestration/.

cli may import everything; benchmark may import demo and production code; demo imports production code
only; production code (every other subpackage and the top-level base modules) imports none of the three.
No two modules import each other, directly or around a circle, not even through an import inside a
function: such a circle is what once held cli, benchmark and the demo run together.

The graph is read from the source with `ast` (nothing is imported), so the test is fast and also sees
the imports inside functions.
"""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "orchestration"

# What each layer may import; anything not named here is production code.
ALLOWED = {
    "production": {"production"},
    "demo": {"production", "demo"},
    "benchmark": {"production", "demo", "benchmark"},
    "cli": {"production", "demo", "benchmark", "cli"},
}
# Modules that may sit directly in orchestration/: what every layer builds on.
TOP_LEVEL_MODULES = {"__init__.py", "settings.py", "child_processes.py"}

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from ... import` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(source: str, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The project modules a module imports anywhere in its body (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            for alias in node.names:
                # `from orchestration.landing import load` imports the module orchestration.landing.load.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {name for name in found if name in modules and name != module}


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> Graph:
    paths = sorted((root / package).rglob("*.py"))
    names = {module_name(path, root): path for path in paths}
    return {name: imports_of(path.read_text(), name, path.name == "__init__.py", set(names))
            for name, path in names.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "production"


def direction_violations(graph: Graph) -> list[str]:
    return sorted(f"{source} ({layer(source)}) imports {target} ({layer(target)})"
                  for source, targets in graph.items() for target in targets
                  if layer(target) not in ALLOWED[layer(source)])


def import_cycles(graph: Graph) -> list[list[str]]:
    """Every group of modules that import each other around a circle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_production_demo_and_benchmark_import_only_downwards() -> None:
    assert direction_violations(import_graph()) == []


def test_no_import_cycles() -> None:
    assert import_cycles(import_graph()) == []


def test_top_level_holds_only_base_modules() -> None:
    """A new module belongs in the subpackage of its concern, not beside them."""
    loose = sorted(path.name for path in (ROOT / PACKAGE).glob("*.py") if path.name not in TOP_LEVEL_MODULES)
    assert loose == []


def test_entry_points_stay_where_they_are_recorded() -> None:
    """The console script and Dagster's code location name these paths; moving them breaks installs."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["attendance-sync"] == "orchestration.cli:main"
    assert importlib.util.find_spec("orchestration.dagster_defs.definitions") is not None
    from orchestration.cli import main

    assert callable(main)


@pytest.mark.parametrize(("graph", "expected"), [
    ({"orchestration.landing.load": {"orchestration.cli"}, "orchestration.cli": set()},
     ["orchestration.landing.load (production) imports orchestration.cli (cli)"]),
    ({"orchestration.demo.run": {"orchestration.benchmark.report"}},
     ["orchestration.demo.run (demo) imports orchestration.benchmark.report (benchmark)"]),
    ({"orchestration.benchmark.report": {"orchestration.cli", "orchestration.demo.data"}},
     ["orchestration.benchmark.report (benchmark) imports orchestration.cli (cli)"]),
    ({"orchestration.cli": {"orchestration.benchmark.report", "orchestration.demo.run", "orchestration.settings"},
      "orchestration.settings": set()}, []),
])
def test_direction_check_itself(graph: Graph, expected: list[str]) -> None:
    assert direction_violations(graph) == expected


def test_cycle_check_itself() -> None:
    graph = {"orchestration.cli": {"orchestration.benchmark.report"},
             "orchestration.benchmark.report": {"orchestration.demo.run"},
             "orchestration.demo.run": {"orchestration.cli"},
             "orchestration.settings": {"orchestration.settings"},
             "orchestration.warehouse.database": {"orchestration.settings"}}
    assert import_cycles(graph) == [["orchestration.benchmark.report", "orchestration.cli", "orchestration.demo.run"],
                                    ["orchestration.settings"]]


def test_graph_reads_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    package = tmp_path / "orchestration"
    (package / "landing").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text("")
    (package / "landing" / "__init__.py").write_text("")
    (package / "landing" / "load.py").write_text("def f():\n    from orchestration import cli\n")
    (package / "landing" / "guard.py").write_text("from . import load\nfrom ..cli import x\n")
    graph = import_graph(tmp_path)
    assert graph["orchestration.landing.load"] == {"orchestration.cli"}
    assert graph["orchestration.landing.guard"] == {"orchestration.landing.load", "orchestration.cli"}
