"""The district registry: validation, secrets from the environment, selection."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from orchestration.districts.registry import (
    RegistryError,
    canonical_code,
    load_registry,
    parse_registry,
    resolve_url,
    select_districts,
)
from orchestration.warehouse.setup import partition_name


def parse(text: str) -> list:
    return parse_registry(text, Path("/registry"), "test.yml")


def test_every_source_kind_parses() -> None:
    districts = parse("""
districts:
  - {code: D01, name: One, source: {database: demo_d01}}
  - {code: D_2, source: {url: "postgresql://sis@db:5432/sis", password_env: D2_PASSWORD}}
  - {code: d3, source: {url_env: D3_URL}}
  - {code: D4, source: {extract_dir: extracts/d4}}
""")
    assert [d.code for d in districts] == ["D01", "D_2", "D3", "D4"]  # codes are upper case: d3 is D3
    assert districts[1].name == "D_2"
    assert districts[3].source.extract_dir == Path("/registry/extracts/d4")


@pytest.mark.parametrize(("text", "message"), [
    ("districts:\n  - {code: 'D-1', source: {database: x}}", "'D-1' is not a valid district code"),
    ("districts:\n  - {code: 'D 1', source: {database: x}}", "is not a valid district code"),
    ("districts:\n  - {code: D1, source: {database: x}}\n  - {code: d1, source: {database: y}}", "listed twice"),
    ("districts:\n  - {code: D1, source: {url: 'postgresql://u:pw@h/db'}}", "the URL holds a password"),
    ("districts:\n  - {code: D1, source: {database: x, url_env: Y}}", "exactly one of"),
    ("districts:\n  - {code: D1}", "exactly one of"),
    ("districts: nope", "expected a top-level 'districts:' list"),
    ("districts:\n  - {name: x}", "entry 1 has no code"),
])
def test_bad_registry_entries_are_refused(text: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse(text)


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with_password, with_url = parse("""
districts:
  - {code: D1, source: {url: "postgresql://sis@db/sis", password_env: D1_PASSWORD}}
  - {code: D2, source: {url_env: D2_URL}}
""")
    with pytest.raises(RegistryError, match="D1_PASSWORD is not set"):
        resolve_url(with_password.source, "D1")
    monkeypatch.setenv("D1_PASSWORD", "pw")
    monkeypatch.setenv("D2_URL", "postgresql://x:y@h/z")
    assert conninfo_to_dict(resolve_url(with_password.source, "D1")) == {
        "user": "sis", "host": "db", "dbname": "sis", "password": "pw"}
    assert resolve_url(with_url.source, "D2") == "postgresql://x:y@h/z"


def test_selection_refuses_unknown_codes(tmp_path: Path) -> None:
    path = tmp_path / "districts.yml"
    path.write_text("districts:\n  - {code: D01, source: {database: a}}\n  - {code: D02, source: {database: b}}\n")
    assert [d.code for d in select_districts(["D02"], path)] == ["D02"]
    assert len(select_districts(None, path)) == 2
    with pytest.raises(RegistryError, match=r"district\(s\) D07 not in the registry; known: D01, D02"):
        select_districts(["D01", "D07"], path)
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry(tmp_path / "missing.yml")


def test_the_committed_registry_is_valid() -> None:
    assert [d.code for d in load_registry(Path(__file__).resolve().parents[2] / "districts.yml")] == [
        "D01", "D02", "D03", "D04"]


def test_codes_have_one_canonical_form() -> None:
    assert canonical_code("d01") == canonical_code("D01") == "D01"
    with pytest.raises(RegistryError, match="'d-1' is not a valid district code"):
        canonical_code("d-1")
    assert partition_name("attendance", "d01") == partition_name("attendance", "D01") == "attendance__d01"
    # Table names hold no double underscore, so no (table, code) pair shares a partition name with another.
    assert partition_name("attendance", "EXCUSE_X") != partition_name("attendance_excuse", "X")


def test_selection_takes_codes_in_any_case(tmp_path: Path) -> None:
    path = tmp_path / "districts.yml"
    path.write_text("districts:\n  - {code: d01, source: {database: a}}\n  - {code: D02, source: {database: b}}\n")
    assert [d.code for d in select_districts(["D01", "d02", "d01"], path)] == ["D01", "D02"]
