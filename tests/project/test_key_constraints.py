"""Keys are enforced by PostgreSQL where it can: a unique index declared with the model (dbt's `indexes`
config; for att_day_aggregation, the per-partition index its build macros create) replaces the uniqueness
data test, which would re-check the same thing by sorting the whole table on every build. Every state model
keeps a key guarantee, enforced or tested. NULLs are refused by NOT NULL constraints declared in the YAML
(macros/column_constraints.sql), never by not_null data tests, and every key column declares one. Reads the
files only; no database."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

STATE_MODELS = Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "state"
MACROS = Path(__file__).resolve().parents[2] / "dbt_project" / "macros"
UNIQUE_INDEX = re.compile(r"\{'columns': \[([^\]]*)\], 'unique': true\}")
AGGREGATION = "att_day_aggregation"


def unique_indexes(model: str) -> list[frozenset[str]]:
    """The unique indexes a model declares; for the aggregation, its partitions' index plus the partition key."""
    if model == AGGREGATION:
        rebuild = (MACROS / "att_day_aggregation" / "att_day_aggregation_rebuild.sql").read_text(encoding="utf-8")
        found = re.search(r"create unique index .*?\((calendar_id, person_id, date)\)", rebuild, re.S)
        assert found, "the aggregation's partitions lost their unique index"
        assert "partition by list (district_code)" in rebuild
        return [frozenset(["district_code", *found.group(1).split(", ")])]
    text = (STATE_MODELS / f"{model}.sql").read_text(encoding="utf-8")
    return [frozenset(re.findall(r"'(\w+)'", match)) for match in UNIQUE_INDEX.findall(text)]


def uniqueness_tests() -> dict[str, list[frozenset[str]]]:
    tests: dict[str, list[frozenset[str]]] = {}
    for path in STATE_MODELS.glob("*.yml"):
        for model in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("models") or []:
            found = tests.setdefault(model["name"], [])
            for test in model.get("data_tests") or []:
                if isinstance(test, dict) and "unique_combination" in test:
                    found.append(frozenset(test["unique_combination"]["arguments"]["combination_of_columns"]))
    return tests


def test_no_data_test_repeats_a_unique_index() -> None:
    repeated = [f"{model}: {sorted(columns)}" for model, tested in uniqueness_tests().items()
                for columns in tested if columns in unique_indexes(model)]
    assert repeated == [], "uniqueness tests a unique index already enforces (drop the test): " + ", ".join(repeated)


def test_every_state_model_has_its_key_enforced_or_tested() -> None:
    tests = uniqueness_tests()
    models = sorted(path.stem for path in STATE_MODELS.glob("*.sql"))
    assert AGGREGATION in models and len(models) >= 15
    unguarded = [model for model in models if not unique_indexes(model) and not tests.get(model)]
    assert unguarded == []


def test_the_models_yaml_says_which_key_is_enforced() -> None:
    for path in STATE_MODELS.glob("*.yml"):
        for model in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("models") or []:
            if unique_indexes(model["name"]):
                assert "unique index" in model["description"], model["name"]


def not_null_constraints() -> dict[str, set[str]]:
    """Model -> columns its YAML declares `constraints: [{type: not_null}]` (macros/column_constraints.sql)."""
    declared: dict[str, set[str]] = {}
    for path in STATE_MODELS.glob("*.yml"):
        for model in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("models") or []:
            declared[model["name"]] = {column["name"] for column in model.get("columns") or []
                                       if {"type": "not_null"} in (column.get("constraints") or [])}
    return declared


def test_every_key_column_is_declared_not_null() -> None:
    """A unique index lets NULLs through; the NOT NULL constraints keep them out of every key."""
    declared = not_null_constraints()
    loose = [f"{model}: {sorted(columns - declared.get(model, set()))}"
             for model in sorted(path.stem for path in STATE_MODELS.glob("*.sql"))
             for columns in unique_indexes(model) if not columns <= declared.get(model, set())]
    assert loose == [], "key columns without a not_null constraint: " + ", ".join(loose)


def test_no_not_null_data_test_repeats_a_constraint() -> None:
    """not_null is a constraint of the table (checked by PostgreSQL on every insert), never a data test that
    scans the table after the build."""
    tested = []
    for folder in ("state", "reports"):
        for path in (STATE_MODELS.parent / folder).glob("*.yml"):
            for model in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("models") or []:
                tested += [f"{model['name']}.{column['name']}" for column in model.get("columns") or []
                           if "not_null" in (column.get("data_tests") or [])]
    assert tested == []
