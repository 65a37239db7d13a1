"""The dbt project stays readable: every macro documented, short macros, one list of changed areas, column
texts written once (doc blocks). Reads the files only; no database."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import yaml

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
MACRO_FOLDERS = (DBT_PROJECT / "macros", DBT_PROJECT / "tests" / "generic")
# {% macro name(...) %}, {% test name(...) %} (dbt names it test_<name>), {% materialization name, adapter='x' %}
DEFINITION = re.compile(r"{%-?\s*(macro|test|materialization)\s+(\w+)(?:\s*,\s*adapter\s*=\s*'(\w+)')?")
END = re.compile(r"{%-?\s*end(?:macro|test|materialization)\s*-?%}")
# A macro longer than this is several steps in one (att_day_aggregation's scope was one of 200 lines).
MAX_MACRO_LINES = 100


def macro_files() -> list[Path]:
    return sorted(path for folder in MACRO_FOLDERS for path in folder.rglob("*.sql"))


def defined_macros() -> Iterator[tuple[str, Path, int]]:
    """(dbt's name of the macro, file, number of lines) of every macro, test and materialization."""
    for path in macro_files():
        text = path.read_text(encoding="utf-8")
        for match in DEFINITION.finditer(text):
            kind, name, adapter = match.groups()
            full_name = {"macro": name, "test": f"test_{name}",
                         "materialization": f"materialization_{name}_{adapter or 'default'}"}[kind]
            end = END.search(text, match.end())
            assert end is not None, f"{path.name}: {name} has no end tag"
            yield full_name, path, text.count("\n", match.start(), end.end()) + 1


def documented_macros() -> dict[str, str]:
    documented: dict[str, str] = {}
    for folder in MACRO_FOLDERS:
        for path in folder.rglob("*.yml"):
            for entry in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("macros") or []:
                documented[entry["name"]] = str(entry.get("description") or "").strip()
    return documented


def column_descriptions(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for column in node.get("columns") or []:
            if isinstance(column, dict) and isinstance(column.get("description"), str):
                yield column["description"].strip()
        for value in node.values():
            yield from column_descriptions(value)
    elif isinstance(node, list):
        for item in node:
            yield from column_descriptions(item)


def test_every_macro_is_documented_in_a_macros_yml() -> None:
    defined = {name for name, _, _ in defined_macros()}
    documented = documented_macros()
    assert sorted(defined - {name for name, text in documented.items() if text}) == []
    assert sorted(set(documented) - defined) == [], "documented macros that no longer exist"


def test_no_macro_is_several_steps_in_one() -> None:
    long = [f"{path.relative_to(DBT_PROJECT)}: {name} has {lines} lines"
            for name, path, lines in defined_macros() if lines > MAX_MACRO_LINES]
    assert long == []


def test_each_changed_area_table_is_created_in_one_place() -> None:
    """The changed-area tables come from one list (att_day_aggregation_changed_areas), not hand-copied blocks."""
    statement = re.compile(r"create temporary table att_day_aggregation__changed_")
    creations = Counter(path.name for path in macro_files()
                        for _ in statement.finditer(path.read_text(encoding="utf-8")))
    assert sum(creations.values()) == 1, creations


def test_no_column_description_is_written_twice() -> None:
    """A text several columns share is a doc block ({% docs %} in models/docs.md), referenced with doc()."""
    texts: Counter[str] = Counter()
    for path in sorted((DBT_PROJECT / "models").rglob("*.yml")):
        texts.update(text for text in column_descriptions(yaml.safe_load(path.read_text(encoding="utf-8")))
                     if "doc(" not in text)
    assert [text for text, uses in texts.items() if uses > 1] == []
