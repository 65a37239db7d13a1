"""The jobs.

Asset jobs, run over every district in one run (a partition range covering the whole registry):
  weekly_state_resync        every landing table and every model, every district
  nightly_attendance         landing loads, the models att_day_aggregation reads, the incremental
                             aggregation and everything built from it (the reports)

Op jobs, for a free choice of districts in one run (the UI's partition picker can only make one run
of a contiguous range of districts; these take any list in their config):
  resync_state_data               the resync tool: reload the districts' landing, then build `objects`
                                  (with `check_dependencies`, also every model they depend on)
  attendance_aggregation_refresh  Attendance Aggregation Refresh: full recompute of att_day_aggregation
                                  and a rebuild of everything downstream of it, for `districts` or all

Op jobs record what they built as materializations of the same assets, per district partition, so the
asset pages show every build whichever way it was started. Every job carries the writer tag that the
run queue limits to one run at a time (dagster.yaml).
"""

# No `from __future__ import annotations`: Dagster reads the op signatures' types at runtime.
from collections.abc import Iterator, Sequence
from typing import Any

from dagster import (
    AssetSelection,
    Config,
    Failure,
    In,
    JobDefinition,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RunConfig,
    colored_console_logger,
    config_mapping,
    define_asset_job,
    in_process_executor,
    job,
    op,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from pydantic import Field

from orchestration.dagster_defs.dbt_assets import (
    AGGREGATION_MODEL,
    WRITER_POOL,
    DbtEvent,
    dbt_build_args,
    dbt_build_events,
    model_nodes,
)
from orchestration.dagster_defs.landing_assets import (
    failure_for,
    landing_tables,
    load_landing,
    partition_materializations,
)
from orchestration.dagster_defs.resources import AttendanceDbtCliResource
from orchestration.dagster_defs.sync_status import SYNC_STATUS_KEY
from orchestration.districts.registry import RegistryError, select_districts

# Run-queue tag limited to 1 in dagster.yaml: at most one of these jobs runs at a time.
WRITER_TAG = {"attendance/writes_state": "true"}

WEEKLY_RESYNC = "weekly_state_resync"
NIGHTLY = "nightly_attendance"
REFRESH = "attendance_aggregation_refresh"
RESYNC = "resync_state_data"


class ResyncConfig(Config):
    districts: list[str] = Field(default_factory=list, description="District codes; empty = every district.")
    objects: list[str] = Field(default_factory=list,
                               description="Model names to resync (e.g. att_day_aggregation); empty = every model.")
    check_dependencies: bool = Field(default=False,
                                     description="Also rebuild every model the objects depend on, parents first.")
    as_of_date: str | None = Field(default=None, description="ISO as-of date; default yesterday in the state.")
    allow_mass_delete: bool = Field(default=False, description=(
        "Let the reload flag more than the limit of a table's live rows deleted (refused otherwise); "
        "every such deletion is recorded in landing.mass_delete_override."))


class RefreshConfig(Config):
    districts: list[str] = Field(default_factory=list, description="District codes; empty = every district.")
    as_of_date: str | None = Field(default=None, description="ISO as-of date; default yesterday in the state.")


def resolve_districts(codes: Sequence[str]) -> list[str]:
    """The codes, validated against the registry; every district when empty."""
    try:
        return [d.code for d in select_districts(list(codes) or None)]
    except RegistryError as error:
        raise Failure(description=str(error)) from None


def resync_selection(objects: Sequence[str], check_dependencies: bool) -> list[str]:
    """dbt selectors for the resync tool: `+model` is Check Dependencies, a bare name is not.

    No objects means every model, which needs no selector (and no dependency check: all parents are in).
    """
    known = model_nodes()
    unknown = [name for name in objects if name not in known]
    if unknown:
        raise Failure(description=f"unknown object(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    names = list(dict.fromkeys(objects))
    return [f"+{name}" if check_dependencies else name for name in names]  # empty: the whole project


def _holder(context: OpExecutionContext) -> str:
    return f"run {context.run.run_id[:8]} job {context.job_name}"


@op(pool=WRITER_POOL, out=Out(Nothing), tags={"kind": "postgres"})
def reload_landing(context: OpExecutionContext, config: ResyncConfig) -> Iterator[Any]:
    """Reload the selected districts' landing tables from their sources."""
    codes = resolve_districts(config.districts)
    allowed_by = f"{_holder(context)} config allow_mass_delete" if config.allow_mass_delete else None
    results = load_landing(codes, holder=_holder(context), log=context.log, allow_mass_delete=allowed_by,
                           run_id=context.run.run_id)
    yield from partition_materializations(results, landing_tables())
    failure = failure_for(results)
    if failure is not None:
        raise failure
    yield Output(None)


@op(pool=WRITER_POOL, ins={"after": In(Nothing)}, out={}, tags={"kind": "dbt"})
def resync_models(context: OpExecutionContext, dbt: AttendanceDbtCliResource,
                  config: ResyncConfig) -> Iterator[DbtEvent]:
    """dbt build of the objects for the districts (with their parents when check_dependencies)."""
    codes = resolve_districts(config.districts)
    select = resync_selection(config.objects, config.check_dependencies)
    context.log.info(f"resync of {' '.join(select)} for {', '.join(codes)}")
    # The resync tool replaces the districts' state rows whole (not only the batches they lack).
    args = dbt_build_args(select=select, districts=codes, as_of_date=config.as_of_date, state_replace=True)
    yield from dbt_build_events(dbt, args, holder=_holder(context), log=context.log, districts=codes, context=None)


@op(pool=WRITER_POOL, out={}, tags={"kind": "dbt"})
def refresh_aggregation(context: OpExecutionContext, dbt: AttendanceDbtCliResource,
                        config: RefreshConfig) -> Iterator[DbtEvent]:
    """Full recompute of att_day_aggregation for the districts, then rebuild what reads it."""
    if AGGREGATION_MODEL not in model_nodes():
        raise Failure(description=f"the dbt project has no {AGGREGATION_MODEL} model")
    codes = resolve_districts(config.districts)
    context.log.info(f"Attendance Aggregation Refresh for {', '.join(codes)}")
    args = dbt_build_args(select=[f"{AGGREGATION_MODEL}+"], districts=codes, as_of_date=config.as_of_date,
                          full_refresh=True)
    yield from dbt_build_events(dbt, args, holder=_holder(context), log=context.log, districts=codes, context=None)


@config_mapping
def resync_config(config: ResyncConfig) -> RunConfig:
    """The Launchpad takes the resync options once, at the top level; both steps read them."""
    return RunConfig(ops={"reload_landing": config, "resync_models": config})


@config_mapping
def refresh_config(config: RefreshConfig) -> RunConfig:
    return RunConfig(ops={"refresh_aggregation": config})


# Progress on the terminal of `attendance-sync resync` without Dagster's debug chatter (the run's full
# event log is stored either way).
_LOGGERS = {"console": colored_console_logger.configured({"log_level": "INFO"})}


@job(name=RESYNC, tags=WRITER_TAG, executor_def=in_process_executor, config=resync_config, logger_defs=_LOGGERS,
     description="Resync selected objects of selected districts (config: districts, objects, check_dependencies).")
def resync_state_data() -> None:
    resync_models(after=reload_landing())


@job(name=REFRESH, tags=WRITER_TAG, executor_def=in_process_executor, config=refresh_config,
     logger_defs=_LOGGERS,
     description="Attendance Aggregation Refresh: full recompute of att_day_aggregation and its reports.")
def attendance_aggregation_refresh() -> None:
    refresh_aggregation()


def aggregation_key_selection() -> AssetSelection:
    node = model_nodes().get(AGGREGATION_MODEL)
    if node is None:
        return AssetSelection.all()
    key = ["state", AGGREGATION_MODEL] if node["config"].get("schema") == "state" else [AGGREGATION_MODEL]
    return AssetSelection.assets(key)


def asset_jobs() -> list[UnresolvedAssetJobDefinition]:
    everything = AssetSelection.all() - AssetSelection.assets(SYNC_STATUS_KEY)
    aggregation = aggregation_key_selection()
    return [
        define_asset_job(WEEKLY_RESYNC, selection=everything, tags=WRITER_TAG,
                         description="Weekly full resync: every district, every landing table and model, one run."),
        define_asset_job(NIGHTLY, selection=aggregation.upstream() | aggregation.downstream(),
                         tags=WRITER_TAG,
                         description="Nightly: landing loads, incremental att_day_aggregation and the reports."),
    ]


def op_jobs() -> list[JobDefinition]:
    return [resync_state_data, attendance_aggregation_refresh]
