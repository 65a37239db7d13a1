"""`attendance-dbt`: dbt itself, run in this process, that dies with the process that started it.

The CLI's dbt runner and dagster-dbt (as its `dbt_executable`) start dbt through this entry point, so
that a killed command or Dagster step never leaves a dbt writing on after the writer lock is gone.
"""

from __future__ import annotations

import sys

from orchestration.child_processes import die_with_parent


def main() -> None:
    die_with_parent()
    from dbt.cli.main import cli

    sys.argv[0] = "dbt"
    sys.exit(cli())


if __name__ == "__main__":
    main()
