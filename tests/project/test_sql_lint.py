"""The SQL lint of the dbt project (dbt_project/.sqlfluff, run by `make lint`) works without a database.

Every model, test and macro renders with the jinja templater and the stand-in macros (a model calling a
macro that needs the database would otherwise end in a templating error), and the lint holds the project's
style: lowercase SQL, explicit `inner join`, qualified references.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT = ROOT / "dbt_project"
SQLFLUFF = Path(sys.executable).parent / "sqlfluff"


def lint(path: Path) -> list[dict]:
    """sqlfluff's JSON report of path: one entry per file, with its violations."""
    result = subprocess.run([str(SQLFLUFF), "lint", str(path), "--format", "json", "--disable-progress-bar"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def violations(report: list[dict]) -> list[str]:
    return [f"{Path(entry['filepath']).name}:{violation['start_line_no']} {violation['code']} "
            f"{violation['description']}" for entry in report for violation in entry["violations"]]


def test_dbt_project_sql_renders_and_is_clean() -> None:
    report = lint(DBT_PROJECT)
    linted = {Path(entry["filepath"]).resolve() for entry in report}
    ignored = {"target", "dbt_packages", "logs"}  # dbt_project/.sqlfluffignore
    assert linted == {path.resolve() for path in DBT_PROJECT.rglob("*.sql") if not ignored & set(path.parts)}
    assert violations(report) == []


def test_lint_reports_a_model_against_the_project_style(tmp_path: Path) -> None:
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT / "macros", project / "macros")
    shutil.copy(DBT_PROJECT / ".sqlfluff", project / ".sqlfluff")
    (project / "models").mkdir()
    (project / "models" / "bad.sql").write_text(
        "with day as (\n"
        "    select * from {{ ref('day') }}\n"
        "    where {{ district_filter() }} and date <= {{ as_of_date() }}\n"
        "),\n\n"
        "calendar as (\n"
        "    select * from {{ ref('calendar') }}\n"
        ")\n\n"
        "SELECT day.date, calendar_id\n"
        "from day\n"
        "join calendar on calendar.calendar_id = day.calendar_id\n"
    )
    codes = {violation.split()[1] for violation in violations(lint(project / "models" / "bad.sql"))}
    # CP01: uppercase keyword; AM05: bare join; RF02: unqualified reference with two tables. No templating
    # error (TMP): district_filter and as_of_date are stood in.
    assert {"CP01", "AM05", "RF02"} <= codes
    assert "TMP" not in codes and "PRS" not in codes
