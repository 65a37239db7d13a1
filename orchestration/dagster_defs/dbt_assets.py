"""Every dbt model as a Dagster asset; dbt tests as asset checks.

Models of `state/` hold one partition per district: a run for some districts passes them
to dbt as `--vars '{districts: [...]}'`, and dbt replaces exactly those districts' rows. Other models
(`reports/`) are built whole and are not partitioned. Both sets use the single-run backfill policy, so
materializing several districts at once is one dbt invocation.

Each materialization records how many rows each built district has in the table (`dagster/row_count`,
which the UI shows as "Row count", and `district_rows` on that district's partition; `rows_by_district`
for all districts of the run) and, for unpartitioned models, the table's row count.
"""

# No `from __future__ import annotations`: Dagster reads the op signatures' types at runtime.
import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    Failure,
    MetadataValue,
    Output,
    PartitionsDefinition,
)
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets
from dagster_dbt.errors import DagsterDbtCliRuntimeError
from psycopg import sql

from orchestration.child_processes import stop_process
from orchestration.dagster_defs.catalog import source_group, source_key
from orchestration.dagster_defs.project import dbt_project, manifest
from orchestration.dagster_defs.resources import AttendanceDbtCliResource
from orchestration.dbt.backdated import BackdatedChange, latest_backdated_changes
from orchestration.dbt.runner import (
    JOB_EXCLUDES,
    NodeResult,
    as_of_date_of,
    lock_timeout_holders,
    state_time_zone,
    vars_argument,
)
from orchestration.dbt.work_plan import default_as_of_date, plan_and_record
from orchestration.districts.admin import sync_registry_file
from orchestration.monitoring.report_headlines import report_headline_metadata
from orchestration.warehouse import database
from orchestration.warehouse.run_origin import dagster_run_origin
from orchestration.warehouse.writer_lock import state_writer_lock

# The concurrency pool of every step that writes landing or state tables (limit 1 in dagster.yaml).
WRITER_POOL = "attendance_state_writer"
# staging/ is ephemeral (compiled into the state models), so it has no assets.
DISTRICT_FOLDERS = ("state",)
REPORTS_FOLDER = "reports"
DISTRICT_SELECT = " ".join(f"path:models/{folder}" for folder in DISTRICT_FOLDERS)
AGGREGATION_MODEL = "att_day_aggregation"

DbtEvent = Output | AssetMaterialization | AssetObservation | AssetCheckResult | AssetCheckEvaluation


class AttendanceTranslator(DagsterDbtTranslator):
    """Sources take their catalog keys (catalog.py: landing tables, the districts, bookkeeping); model
    groups follow the dbt folders (state, reports)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return source_key(dbt_resource_props["schema"], dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return source_group(dbt_resource_props["schema"], dbt_resource_props["name"])
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else "dbt"


def translator() -> AttendanceTranslator:
    return AttendanceTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def is_district_model(node: Mapping[str, Any]) -> bool:
    fqn = node.get("fqn", [])
    return node.get("resource_type") == "model" and len(fqn) > 2 and fqn[1] in DISTRICT_FOLDERS


def model_nodes(dbt_manifest: Mapping[str, Any] | None = None) -> dict[str, Mapping[str, Any]]:
    """Model name -> manifest node."""
    nodes = (dbt_manifest or manifest())["nodes"].values()
    return {node["name"]: node for node in nodes if node["resource_type"] == "model"}


class DbtBuildConfig(Config):
    """Run options of the dbt step (Launchpad: ops -> <dbt op> -> config)."""

    full_refresh: bool = False  # --full-refresh: recompute incremental models (the Aggregation Refresh)
    state_replace: bool = False  # replace the state tables' districts whole (the weekly resync always does)
    as_of_date: str | None = None  # ISO date for att_day_aggregation and the reports; default yesterday


def dbt_build_args(*, select: Sequence[str] | None = None, districts: Sequence[str] | None = None,
                   as_of_date: str | None = None, full_refresh: bool = False,
                   state_replace: bool = False) -> list[str]:
    """The `dbt build` argument list (selection args are added by dagster-dbt when `select` is None)."""
    from orchestration.warehouse.rights import district_writer_dbt_args

    args = ["build"]
    if select:
        args += ["--select", " ".join(select)]
    args += district_writer_dbt_args(args)
    # The CLI's runner's vars: codes canonical, the state's time zone, the as-of date checked.
    args += vars_argument(districts, as_of_date_of(as_of_date), state_replace=state_replace)
    if full_refresh:
        args.append("--full-refresh")
    return [*args, *JOB_EXCLUDES]


@dataclass(frozen=True)
class ModelTable:
    schema: str
    name: str
    materialized: str
    by_district: bool


def model_table(node: Mapping[str, Any]) -> ModelTable:
    return ModelTable(schema=node["schema"], name=node.get("alias") or node["name"],
                      materialized=node["config"].get("materialized", "view"), by_district=is_district_model(node))


def district_row_counts(conn: psycopg.Connection, table: ModelTable, districts: Sequence[str]) -> dict[str, int]:
    """Rows per district in a built table (0 for a district that has none)."""
    query = sql.SQL("select district_code, count(*) from {} where district_code = any(%s) group by 1").format(
        sql.Identifier(table.schema, table.name))
    counts = {str(code): int(count) for code, count in conn.execute(query, (list(districts),)).fetchall()}
    return {code: counts.get(code, 0) for code in districts}


def total_row_count(conn: psycopg.Connection, table: ModelTable) -> int:
    row = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(table.schema, table.name)))
    result = row.fetchone()
    return int(result[0]) if result else 0


def _node_for_event(event: DbtEvent, nodes_by_id: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any] | None:
    if not isinstance(event, Output | AssetMaterialization):
        return None
    unique_id = event.metadata.get("unique_id")
    text = getattr(unique_id, "value", unique_id)
    return nodes_by_id.get(str(text)) if text else None


def row_count_metadata(conn: psycopg.Connection, node: Mapping[str, Any],
                       districts: Sequence[str] | None) -> tuple[dict[str, Any], dict[str, int]]:
    """(event metadata, rows per district) for a built model; views are not counted."""
    table = model_table(node)
    if table.materialized in ("view", "ephemeral"):
        return {}, {}
    if table.by_district and districts:
        counts = district_row_counts(conn, table, districts)
        return {"rows_by_district": MetadataValue.json(counts)}, counts
    return {"dagster/row_count": MetadataValue.int(total_row_count(conn, table))}, {}


def district_metadata(count: int) -> dict[str, MetadataValue]:
    """A district partition's own row count (the UI's "Row count" of that partition)."""
    return {"dagster/row_count": MetadataValue.int(count), "district_rows": MetadataValue.int(count)}


def backdated_metadata(change: BackdatedChange) -> dict[str, MetadataValue]:
    """A district partition's backdated changes in the build (counts only when measured)."""
    metadata = {"backdated_changes": MetadataValue.text(change.describe())}
    if change.measured:
        metadata.update({
            "backdated_rows": MetadataValue.int(change.backdated_rows or 0),
            "backdated_inserted": MetadataValue.int(change.backdated_inserted or 0),
            "backdated_changed": MetadataValue.int(change.backdated_changed or 0),
            "backdated_deleted": MetadataValue.int(change.backdated_deleted or 0),
            "backdated_student_days": MetadataValue.int(change.student_days_changed or 0),
        })
    return metadata


def backdated_change_metadata(conn: psycopg.Connection, node: Mapping[str, Any],
                              districts: Sequence[str] | None) -> dict[str, dict[str, MetadataValue]]:
    """Per district, the backdated changes the aggregation's build just recorded (state.backdated_change;
    builds of the aggregation are serialised, so a district's last row is this build's); {} for other models."""
    if node.get("name") != AGGREGATION_MODEL or not districts:
        return {}
    return {code: backdated_metadata(change) for code, change in latest_backdated_changes(conn, districts).items()}


def stream_with_row_counts(events: Iterable[DbtEvent], *, districts: Sequence[str] | None,
                           context: AssetExecutionContext | None) -> Iterator[DbtEvent]:
    """Pass dbt's events through, adding row counts; per district on the partition where there is one.

    With an asset context the counts go on each district's partition of the Output. Without one (op
    jobs), a model's AssetMaterialization is repeated per district with that district as its partition,
    so the asset's partitions show the build even though an op job ran it.
    """
    nodes_by_id = {node["unique_id"]: node for node in manifest()["nodes"].values()}
    with database.connect(autocommit=True) as conn:
        yield from _with_row_counts(conn, events, nodes_by_id, districts=districts, context=context)


def is_report_model(node: Mapping[str, Any]) -> bool:
    fqn = node.get("fqn", [])
    return node.get("resource_type") == "model" and len(fqn) > 2 and fqn[1] == REPORTS_FOLDER


def _with_row_counts(conn: psycopg.Connection, events: Iterable[DbtEvent],
                     nodes_by_id: Mapping[str, Mapping[str, Any]], *, districts: Sequence[str] | None,
                     context: AssetExecutionContext | None) -> Iterator[DbtEvent]:
    for event in events:
        node = _node_for_event(event, nodes_by_id)
        if node is None:
            yield event
            continue
        metadata, counts = row_count_metadata(conn, node, districts)
        if is_report_model(node):
            # Numeric metadata: the UI plots each figure over the report's materializations. Read again
            # after each report, since the figures come from all three.
            metadata.update(report_headline_metadata(conn))
        backdated = backdated_change_metadata(conn, node, districts)
        if isinstance(event, Output):
            assert context is not None
            key = context.asset_key_for_output(event.output_name)
            for code, count in counts.items():
                context.add_asset_metadata({**district_metadata(count), **backdated.get(code, {})}, asset_key=key,
                                           partition_key=code)
            yield event.with_metadata({**event.metadata, **metadata})
        elif isinstance(event, AssetMaterialization) and is_district_model(node) and districts:
            for code in districts:
                own = {**(district_metadata(counts[code]) if code in counts else {}), **backdated.get(code, {})}
                yield AssetMaterialization(asset_key=event.asset_key, partition=code,
                                           metadata={**event.metadata, **metadata, **own})
        elif isinstance(event, AssetMaterialization):
            yield event.with_metadata({**event.metadata, **metadata})
        else:
            yield event


def dbt_build_events(dbt: AttendanceDbtCliResource, args: list[str], *, holder: str, log: Any,
            districts: Sequence[str] | None, context: AssetExecutionContext | None,
            plan: Callable[[], list[str]] | None = None) -> Iterator[DbtEvent]:
    """One dbt invocation under the writer lock, streaming Dagster events with row counts. `plan`: more
    arguments, worked out under the lock (the nightly's work plan)."""
    with state_writer_lock(holder, log=log.info):
        sync_registry_file()  # builds only the districts the registry file lists now
        if plan is not None:
            args = [*args, *plan()]
        if context is not None:
            invocation = dbt.cli(args, context=context)
        else:
            invocation = dbt.cli(args, manifest=manifest(), dagster_dbt_translator=translator())
        try:
            yield from stream_with_row_counts(invocation.stream(), districts=districts, context=context)
        except DagsterDbtCliRuntimeError as error:
            holders = _lock_timeout_holders(invocation.target_path)
            if not holders:
                raise
            raise Failure(description=f"{error.description}\n{holders}") from error
        finally:
            # However the step ends (failure, interruption), dbt is gone before the lock is released.
            stop_process(invocation.process)
    # Each invocation writes its artifacts (a manifest copy, logs) to its own target folder; keep only
    # those of failed runs, which the error message points to.
    shutil.rmtree(invocation.target_path, ignore_errors=True)


def _lock_timeout_holders(target_path: Path) -> str:
    """Who held the table locks that failed models timed out waiting for (see writer_sessions)."""
    results = target_path / "run_results.json"
    if not results.exists():
        return ""
    nodes = [NodeResult(unique_id=entry["unique_id"], status=str(entry.get("status")), execution_time=0.0,
                        message=entry.get("message"), failures=None, relation_name=entry.get("relation_name"))
             for entry in json.loads(results.read_text()).get("results", [])]
    return lock_timeout_holders(nodes)


# Jobs whose dbt step replaces every selected district of the state tables whole (dagster_defs/jobs.py's
# WEEKLY_RESYNC): the weekly resync also catches what incremental runs cannot see (a changed model).
STATE_REPLACE_JOBS = frozenset({"weekly_state_resync"})


def replaces_state(context: AssetExecutionContext, config: DbtBuildConfig) -> bool:
    return config.state_replace or context.job_name in STATE_REPLACE_JOBS


# Jobs that first ask the warehouse which selected models have nothing to do and leave those out of the
# dbt invocation (orchestration/dbt/work_plan.py): the nightly, which an hourly cron may run all day.
# Analysts' own materializations build what they select.
PLANNED_JOBS = frozenset({"nightly_attendance"})


def work_plan(context: AssetExecutionContext, config: DbtBuildConfig,
              districts: Sequence[str]) -> Callable[[], list[str]] | None:
    """For PLANNED_JOBS: what to add to the dbt arguments, worked out under the writer lock: `--exclude` of
    the selected models with nothing new since their last build, recorded as current (work_plan.py)."""
    if context.job_name not in PLANNED_JOBS or config.full_refresh or replaces_state(context, config):
        return None

    def plan() -> list[str]:
        selected = sorted(key.path[-1] for key in context.selected_asset_keys)
        as_of = as_of_date_of(config.as_of_date) or default_as_of_date(state_time_zone())
        with database.connect() as conn:
            decided = plan_and_record(conn, selected, districts, as_of, dagster_run_origin(context.run.run_id))
        context.log.info(decided.summary())
        return decided.exclude_args()

    return plan


def _holder(context: AssetExecutionContext) -> str:
    return f"run {context.run.run_id[:8]} step {context.op_execution_context.op.name}"


def build_dbt_assets(partitions: PartitionsDefinition) -> list[AssetsDefinition]:
    """The district-partitioned models, and (when there are any) the statewide ones."""
    project = dbt_project()
    dbt_manifest = manifest()

    @dbt_assets(manifest=dbt_manifest, project=project, select=DISTRICT_SELECT, partitions_def=partitions,
                backfill_policy=BackfillPolicy.single_run(), dagster_dbt_translator=translator(),
                pool=WRITER_POOL, name="district_models")
    def district_models(context: AssetExecutionContext, dbt: AttendanceDbtCliResource,
                        config: DbtBuildConfig) -> Iterator[DbtEvent]:
        districts = sorted(context.partition_keys)
        context.log.info(f"dbt build for district(s) {', '.join(districts)}")
        args = dbt_build_args(districts=districts, as_of_date=config.as_of_date, full_refresh=config.full_refresh,
                              state_replace=replaces_state(context, config))
        yield from dbt_build_events(dbt, args, holder=_holder(context), log=context.log, districts=districts,
                           context=context, plan=work_plan(context, config, districts))

    assets = [district_models]
    statewide = [node for node in model_nodes(dbt_manifest).values() if not is_district_model(node)]
    if statewide:

        @dbt_assets(manifest=dbt_manifest, project=project, exclude=DISTRICT_SELECT,
                    backfill_policy=BackfillPolicy.single_run(), dagster_dbt_translator=translator(),
                    pool=WRITER_POOL, name="statewide_models")
        def statewide_models(context: AssetExecutionContext, dbt: AttendanceDbtCliResource,
                             config: DbtBuildConfig) -> Iterator[DbtEvent]:
            args = dbt_build_args(as_of_date=config.as_of_date, full_refresh=config.full_refresh,
                                  state_replace=replaces_state(context, config))
            yield from dbt_build_events(dbt, args, holder=_holder(context), log=context.log, districts=None,
                               context=context)

        assets.append(statewide_models)
    return assets
