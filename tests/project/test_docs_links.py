"""The documentation stays inside the repository: links resolve, and no file cites a machine's paths.

README.md and docs/*.md are read on a fresh clone, in a code host's file view or an editor; a link to a
file outside the repository, or a path on the machine where a file was written, is dead everywhere else.
The same holds for the dbt YAML descriptions, which `dbt docs` renders.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT = ROOT / "dbt_project"

# [text](target) and ![alt](target), with an optional "title"; reference definitions `[id]: target`.
INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
FENCED_BLOCK = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:.+?)\1", re.DOTALL)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# A repository path quoted as code in the docs, e.g. `orchestration/cli/` or `dbt_project/macros/`.
QUOTED_PATH = re.compile(r"^[\w.-]+(?:/[\w.-]+)+/?$")

# Built from parts so that this file does not match its own patterns.
_FORBIDDEN_PARTS = ("../" + "shared", "shared" + "/design")
_MACHINE_PATH = re.compile(r"(?<![\w.~$-])/(?:" + "|".join(("wo" + "rk", "ro" + "ot", "ho" + "me")) + r")(?:/|\b)")


def repository_files() -> list[str]:
    """Files of the repository: tracked, plus new ones not yet committed (never ignored ones)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and (ROOT / name).is_file()})


def repository_entries(files: list[str]) -> set[str]:
    """Every file and every folder holding one, as repository-relative paths."""
    entries: set[str] = set()
    for name in files:
        path = Path(name)
        entries.add(path.as_posix())
        entries.update(parent.as_posix() for parent in path.parents if parent != Path("."))
    return entries


def is_build_output(path: str) -> bool:
    """A path git ignores (dbt's target folder, logs): made by a run, so it may be named though absent."""
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, check=False).returncode == 0


def markdown_pages(files: list[str]) -> list[str]:
    return [name for name in files if name == "README.md" or re.fullmatch(r"docs/[^/]+\.md", name)]


def without_code(text: str) -> str:
    """Markdown with fenced blocks and code spans blanked: a link shown as code is not a link."""
    text = FENCED_BLOCK.sub(lambda match: "\n" * match.group(0).count("\n"), text)
    return CODE_SPAN.sub("", text)


def link_targets(markdown: str) -> Iterator[str]:
    prose = without_code(markdown)
    for pattern in (INLINE_LINK, REFERENCE_LINK):
        for match in pattern.finditer(prose):
            yield match.group(1)


def heading_anchors(markdown: str) -> set[str]:
    """The anchors a code host gives the headings: lower case, punctuation dropped, spaces as hyphens."""
    anchors: set[str] = set()
    for line in FENCED_BLOCK.sub("", markdown).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            anchor, number = slug, 0
            while anchor in anchors:
                number += 1
                anchor = f"{slug}-{number}"
            anchors.add(anchor)
    return anchors


def link_problem(target: str, bases: list[Path], entries: set[str], page: Path | None = None) -> str | None:
    """Why a link target is wrong, or None when it names a file or folder of the repository.

    With `page` (the markdown file holding the link), a #fragment must name a heading of the linked page.
    """
    if not target:
        return None
    if SCHEME.match(target) or target.startswith("//"):
        return "links outside the repository"
    path, _, fragment = unquote(target.split("?", 1)[0]).partition("#")
    if path.startswith("/"):
        return "is an absolute path"
    linked = page if not path else None
    for base in bases if path else []:
        resolved = (base / path).resolve()
        if not resolved.is_relative_to(ROOT):
            continue
        relative = resolved.relative_to(ROOT).as_posix()
        if relative in entries or relative == ".":
            linked = resolved
            break
    else:
        if path:
            return "names no file of the repository"
    if fragment and page is not None and linked is not None and linked.suffix == ".md" \
            and fragment not in heading_anchors(linked.read_text(encoding="utf-8")):
        return f"names no heading #{fragment} of {linked.relative_to(ROOT).as_posix()}"
    return None


def yaml_descriptions(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                yield value
            else:
                yield from yaml_descriptions(value)
    elif isinstance(node, list):
        for item in node:
            yield from yaml_descriptions(item)


@pytest.fixture(scope="module")
def files() -> list[str]:
    return repository_files()


def test_markdown_links_name_files_of_the_repository(files: list[str]) -> None:
    entries = repository_entries(files)
    pages = markdown_pages(files)
    assert "README.md" in pages and "docs/README.md" in pages
    broken = []
    for page in pages:
        for target in link_targets((ROOT / page).read_text(encoding="utf-8")):
            problem = link_problem(target, [(ROOT / page).parent], entries, ROOT / page)
            if problem:
                broken.append(f"{page}: link {target!r} {problem}")
    assert not broken, "\n".join(broken)


def test_paths_quoted_in_the_docs_exist(files: list[str]) -> None:
    """A file the docs name as code (where a rule is implemented or tested) must still be there."""
    entries = repository_entries(files)
    top_level = {Path(name).parts[0] for name in files if "/" in name}
    missing = []
    for page in [name for name in markdown_pages(files) if name.startswith("docs/")]:
        for span in CODE_SPAN.finditer(FENCED_BLOCK.sub("", (ROOT / page).read_text(encoding="utf-8"))):
            quoted = span.group(0).strip("`").strip()
            if QUOTED_PATH.match(quoted) and quoted.split("/")[0] in top_level and quoted.rstrip("/") not in entries \
                    and not is_build_output(quoted):
                missing.append(f"{page}: `{quoted}` is not a file or folder of the repository")
    assert not missing, "\n".join(missing)


def dbt_unit_tests(files: list[str]) -> dict[str, str]:
    """dbt unit test name -> the model it tests, from every YAML file of the dbt project."""
    tests: dict[str, str] = {}
    for name in files:
        if name.startswith("dbt_project/") and name.endswith((".yml", ".yaml")):
            document = yaml.safe_load((ROOT / name).read_text(encoding="utf-8")) or {}
            for entry in document.get("unit_tests") or [] if isinstance(document, dict) else []:
                tests[entry["name"]] = entry["model"]
    return tests


def test_tests_named_in_the_docs_exist(files: list[str]) -> None:
    """Where the docs say a rule is tested, the test is still there: `test_...` is a pytest function,
    `<model>_...` (a model that has unit tests) a dbt unit test."""
    test_code = "\n".join((ROOT / name).read_text(encoding="utf-8") for name in files
                          if name.startswith("tests/") and name.endswith(".py"))
    unit_tests = dbt_unit_tests(files)
    unit_tested = re.compile(r"(?:" + "|".join(sorted(set(unit_tests.values()))) + r")_\w+")
    missing = []
    for page in [name for name in markdown_pages(files) if name.startswith("docs/")]:
        for span in CODE_SPAN.finditer(FENCED_BLOCK.sub("", (ROOT / page).read_text(encoding="utf-8"))):
            quoted = span.group(0).strip("`").strip()
            if re.fullmatch(r"test_\w+", quoted) and f"def {quoted}(" not in test_code:
                missing.append(f"{page}: pytest function `{quoted}` does not exist")
            elif unit_tested.fullmatch(quoted) and quoted not in unit_tests:
                missing.append(f"{page}: dbt unit test `{quoted}` does not exist")
    assert not missing, "\n".join(missing)


def test_dbt_descriptions_link_inside_the_repository(files: list[str]) -> None:
    """dbt renders descriptions away from their file: a link may be relative to it, the dbt project or the root."""
    entries = repository_entries(files)
    broken = []
    for name in files:
        if not (name.startswith("dbt_project/") and name.endswith((".yml", ".yaml"))):
            continue
        document = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
        for description in yaml_descriptions(document):
            for target in link_targets(description):
                problem = link_problem(target, [(ROOT / name).parent, DBT_PROJECT, ROOT], entries)
                if problem:
                    broken.append(f"{name}: description link {target!r} {problem}")
    assert not broken, "\n".join(broken)


def test_no_file_cites_a_machine_path_or_the_design_folder(files: list[str]) -> None:
    found = []
    for name in files:
        content = (ROOT / name).read_bytes()
        if b"\0" in content:
            continue  # binary
        text = content.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if any(part in line for part in _FORBIDDEN_PARTS) or _MACHINE_PATH.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "paths outside the repository:\n" + "\n".join(found)


@pytest.mark.parametrize(("target", "problem"), [
    ("docs/domain.md", None),
    ("docs/domain.md#aggregated-attendance", None),
    ("#the-world", None),
    ("orchestration/", None),
    ("../" + "shared" + "/design/DOMAIN.md", "names no file of the repository"),
    ("docs/nowhere.md", "names no file of the repository"),
    ("https://example.org/page", "links outside the repository"),
    ("/" + "work/shared/x.md", "is an absolute path"),
])
def test_link_checker_itself(target: str, problem: str | None) -> None:
    entries = {"docs", "docs/domain.md", "orchestration", "orchestration/cli/"}
    assert link_problem(target, [ROOT], entries) == problem


def test_heading_anchors() -> None:
    text = ("# Domain rules\n## District source data (the data contract)\n"
            "## Aggregated attendance: att_day_aggregation\n```\n# not a heading\n```\n## Codes\n### Codes\n")
    assert heading_anchors(text) == {"domain-rules", "district-source-data-the-data-contract",
                                     "aggregated-attendance-att_day_aggregation", "codes", "codes-1"}


def test_links_inside_code_are_not_links() -> None:
    text = "See [the rules](docs/domain.md).\n\n```\n[x](nowhere.md)\n```\nand `[y](gone.md)`.\n"
    assert list(link_targets(text)) == ["docs/domain.md"]
