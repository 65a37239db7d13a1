"""Resources: the dbt CLI, pointed at the same PostgreSQL the Python code uses.

dagster-dbt starts dbt with a copy of this process's environment. The connection settings of the
Python code (`database.connection_settings()`, embedded server by default) reach dbt as PG* variables,
which profiles/profiles.yml reads. They are placed in the environment only while the dbt process is
being started: PG* in this process's own environment would switch the Python code to "external server"
mode for good.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any

from dagster import InitResourceContext
from dagster_dbt import DbtCliInvocation, DbtCliResource
from packaging import version
from pydantic import PrivateAttr

from orchestration.dagster_defs.project import dbt_project
from orchestration.dbt.runner import dbt_executable, dbt_process_variables
from orchestration.warehouse.run_origin import ORIGIN_VARIABLE, dagster_run_origin

_environment_lock = threading.Lock()


@contextlib.contextmanager
def dbt_connection_environment(origin: str | None = None) -> Iterator[dict[str, str]]:
    """Temporarily export the PG* settings of the state database (and start the embedded server), and the
    origin dbt records with its builds (the Dagster run, run_origin.py)."""
    variables = {**dbt_process_variables(), **({ORIGIN_VARIABLE: origin} if origin else {}),
                 # A test runs only when every model it reads is selected: a relationship test of a
                 # report must not run (and fail) in a build of the state models alone. dagster-dbt
                 # still overrides this when it selects individual asset checks.
                 "DBT_INDIRECT_SELECTION": os.environ.get("DBT_INDIRECT_SELECTION", "cautious")}
    with _environment_lock:
        saved = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        try:
            yield variables
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class AttendanceDbtCliResource(DbtCliResource):
    """DbtCliResource whose dbt processes connect to the project's state database.

    Two start-up costs of every invocation are skipped, because this project uses neither: the
    in-process dbt adapter (only for dagster-dbt's fetch_row_counts/fetch_column_metadata; row counts
    per district are queried directly, see dbt_assets.py) and a `dbt --version` subprocess (the
    installed dbt-core is the one in this environment).
    """

    _run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        super().setup_for_execution(context)
        # The run whose steps use this resource: its builds record it as their origin.
        self._run_id = context.run.run_id if context.run else None

    def cli(self, args: Sequence[str], **kwargs: Any) -> DbtCliInvocation:
        with dbt_connection_environment(dagster_run_origin(self._run_id) if self._run_id else None):
            return super().cli(args, **kwargs)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        from dbt.version import __version__

        return version.parse(__version__)


def dbt_resource() -> AttendanceDbtCliResource:
    return AttendanceDbtCliResource(project_dir=dbt_project(), dbt_executable=dbt_executable())
