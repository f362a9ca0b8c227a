"""Configuration + discovery cache → Airflow DAGs: one self-optimizing DAG per table, one sync DAG.

The per-table DAG (``amoro__<conn>__<namespace>__<table>``)::

    resolve ──> evaluate ──(nothing pending: skipped)──> plan ──> execute.expand(task=plan) ──> commit
        ──> expire_snapshots ──> clean_dangling_delete_files ──> ... (the enabled actions)

- ``resolve`` settles the previous process before anything new is planned: an ``UNKNOWN``
  commit is looked up by its plan id (landed or not), and the files of the last process that no
  retained snapshot references (killed workers, retried tasks, dead runs) are deleted.

- ``execute`` runs in the optimizer group's pool (and queue), at most the table's quota at once
  (``max_active_tis_per_dagrun``), with ``self-optimizing.execute.num-retries`` retries.
- Maintenance tasks use the trigger rule ``none_failed``: they run when optimizing was skipped and
  when it committed, not when it failed. Each one first checks (``pre_execute``) whether its
  interval has passed since its last recorded run and skips itself otherwise; its last run is
  recorded in the table's runtime state (asset state store) after it succeeds.
- ``optimizing_failed`` (trigger rule ``one_failed`` on evaluate, plan, execute and commit) fails
  the run when optimizing failed, so a misconfigured table never looks green; the failure and a
  growing, capped backoff are recorded in the runtime state (see :mod:`.failures`).
- Every task has an ``execution_timeout`` (``defaults.task_timeout``; execute:
  ``defaults.execute_timeout``) and every run a ``dagrun_timeout`` (``defaults.run_timeout``): a
  hung call fails its task and the next run proceeds.
- ``max_active_runs=1``: one optimizing process per table, as in Amoro.
- ``priority_weight`` (absolute) follows the table's cached cost, so the most needed table's tasks
  leave the pool queue first.

Schedule, and why the optimizer's own commits never trigger the DAG again: every operator that
changes the table emits an event for the **table asset** ``iceberg://<conn>/<ns>/<table>``; if the
DAG were scheduled on that asset, its own commit would queue its next run. The DAG is instead
scheduled on a companion **change-feed asset** ``x-amoro-changes://<conn>/<ns>/<table>`` whose
only producer is an ``AssetWatcher`` running ``TableChangeTrigger`` with the optimizer's own
snapshots ignored, combined (``AssetOrTimeSchedule``) with a fallback time schedule.

Nothing here contacts a catalog or the metadata DB: discovery is read from the cache (see
:mod:`.cache`), so parsing 1,000 tables stays well under two seconds.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from airflow_provider_amoro.dag_factory.cache import CatalogCache, read_cache
from airflow_provider_amoro.dag_factory.config import (
    CATALOG_SYNC_DAG_ID,
    FactoryConfig,
    ScheduleSpec,
    TableSettings,
)
from airflow_provider_amoro.dag_factory.errors import ConfigError
from airflow_provider_amoro.dag_factory.failures import (
    OUTCOME_TASK_ID,
    OptimizingBackoffCheck,
    OptimizingFailureClearer,
    OptimizingFailureRecorder,
    OptimizingOutcome,
)

if TYPE_CHECKING:
    from airflow.sdk import DAG, Asset

log = logging.getLogger(__name__)

START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)
TAGS = ("amoro",)


def change_feed_asset(settings: TableSettings, poll_interval: timedelta) -> Asset:
    """The asset the table DAG is scheduled on: commits by others, watched by ``TableChangeTrigger``.

    It is :func:`airflow_provider_amoro.assets.table_change_asset` (``x-amoro-changes://…``) with
    one ``AssetWatcher`` whose trigger ignores the optimizer's own snapshots.

    Args:
        settings: the table's resolved settings.
        poll_interval: how often the trigger looks for new snapshots.
    """
    from airflow.sdk import AssetWatcher

    from airflow_provider_amoro.assets import table_change_asset
    from airflow_provider_amoro.triggers.table_change import TableChangeTrigger

    trigger = TableChangeTrigger(
        table=settings.identifier,
        amoro_conn_id=settings.conn_id,
        ignore_optimizer=True,
        poll_interval=poll_interval.total_seconds(),
    )
    watcher = AssetWatcher(name=f"{settings.dag_id}__changes", trigger=trigger)
    return table_change_asset(settings.conn_id, settings.identifier, watchers=[watcher])


def _timetable(spec: ScheduleSpec) -> Any:
    from airflow.sdk import CronTriggerTimetable, DeltaTriggerTimetable

    if spec.cron is not None:
        return CronTriggerTimetable(spec.cron, timezone="UTC")
    assert spec.every is not None
    return DeltaTriggerTimetable(spec.every)


def table_schedule(settings: TableSettings, poll_interval: timedelta) -> Any:
    """The DAG ``schedule``: change feed OR fallback timetable, either alone, or None."""
    from airflow.sdk import AssetOrTimeSchedule

    feed = change_feed_asset(settings, poll_interval) if settings.watch_changes else None
    if feed is not None and not settings.schedule.is_off:
        return AssetOrTimeSchedule(timetable=_timetable(settings.schedule), assets=[feed])
    if feed is not None:
        return [feed]
    if not settings.schedule.is_off:
        return _timetable(settings.schedule)
    return None


class MaintenanceDueCheck:
    """``pre_execute`` hook of a maintenance task: skip it unless its interval has passed.

    The last run is read from the table's runtime state (asset state store, through the Task SDK).
    A table never maintained, or state that cannot be read, counts as due.

    Args:
        action: the maintenance action (``expire_snapshots``, …).
        interval: minimum time between two runs.
        asset_uri: the table asset's URI.
    """

    def __init__(self, action: str, interval: timedelta, asset_uri: str) -> None:
        self.action = action
        self.interval = interval
        self.asset_uri = asset_uri

    def __call__(self, context: Mapping[str, Any]) -> None:
        """Raise ``AirflowSkipException`` when the action ran less than ``interval`` ago."""
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_provider_amoro.runtime.recorder import TableStateRecorder

        last = TableStateRecorder(context, self.asset_uri).last_maintenance(self.action)
        if last is None or not last.success:
            return
        age_ms = int(time.time() * 1000) - int(last.time_ms)
        if age_ms < self.interval.total_seconds() * 1000:
            raise AirflowSkipException(
                f"{self.action} ran {age_ms / 1000:.0f} s ago; its interval is "
                f"{self.interval.total_seconds():.0f} s"
            )


class MaintenanceRecorder:
    """``post_execute`` hook: record the action's last run unless the operator recorded it itself.

    Args:
        action: the maintenance action.
        asset_uri: the table asset's URI.
    """

    def __init__(self, action: str, asset_uri: str) -> None:
        self.action = action
        self.asset_uri = asset_uri

    def __call__(self, context: Mapping[str, Any], result: Any = None) -> None:
        """Write ``amoro.maintenance.<action>`` for this task instance if it is not there yet."""
        from airflow_provider_amoro.runtime.recorder import TableStateRecorder

        recorder = TableStateRecorder(context, self.asset_uri)
        last = recorder.last_maintenance(self.action)
        ti = context.get("ti")
        if last is not None and ti is not None and last.run_id == ti.run_id and last.task_id == ti.task_id:
            return
        metrics = result if isinstance(result, Mapping) else {"result": result}
        recorder.record_maintenance(self.action, dict(metrics))


_OPERATOR_PATHS: dict[str, tuple[str, str]] = {
    "resolve": ("optimizing", "ResolveOptimizingOperator"),
    "evaluate": ("optimizing", "EvaluateOptimizingOperator"),
    "plan": ("optimizing", "PlanOptimizingOperator"),
    "execute": ("optimizing", "ExecuteOptimizingTaskOperator"),
    "commit": ("optimizing", "CommitOptimizingOperator"),
    "expire_snapshots": ("maintenance", "ExpireSnapshotsOperator"),
    "clean_dangling_delete_files": ("maintenance", "CleanDanglingDeleteFilesOperator"),
    "clean_orphan_files": ("maintenance", "CleanOrphanFilesOperator"),
    "expire_data": ("maintenance", "ExpireDataOperator"),
    "create_tags": ("maintenance", "CreateTagsOperator"),
}


class _Operators(dict[str, Any]):
    """Operator classes by role, imported on first use (a DAG without maintenance imports none)."""

    def __missing__(self, role: str) -> Any:
        import importlib

        module, name = _OPERATOR_PATHS[role]
        cls = getattr(importlib.import_module(f"airflow_provider_amoro.operators.{module}"), name)
        self[role] = cls
        return cls


@lru_cache(maxsize=1)
def _dag_class() -> type[DAG]:
    """``DAG`` with a hash of its id only (equal DAGs have equal ids, so the contract holds).

    Airflow hashes a DAG from its task ids and the ``repr`` of its schedule every time two tasks are
    linked; with an asset schedule that carries a watcher this was a sixth of the parse time of
    1,000 generated DAGs.
    """
    from airflow.sdk import DAG

    class AmoroDAG(DAG):
        __doc__ = DAG.__doc__

        def __hash__(self) -> int:
            return hash((DAG, self.dag_id))

    return AmoroDAG


@lru_cache(maxsize=1)
def _airflow_dag_defaults() -> tuple[int, int, bool]:
    from airflow.sdk.configuration import conf

    return (
        conf.getint("core", "max_active_tasks_per_dag"),
        conf.getint("core", "max_consecutive_failed_dag_runs_per_dag"),
        conf.getboolean("dag_processor", "disable_bundle_versioning"),
    )


def _dag_config_defaults() -> dict[str, Any]:
    """DAG arguments whose defaults Airflow reads from its configuration, read once per parse.

    Airflow looks each of them up for every DAG (about 0.4 ms apiece); with 1,000 tables that alone
    would be over a second of parse time.
    """
    max_tasks, max_failed, no_versioning = _airflow_dag_defaults()
    return {
        "max_active_tasks": max_tasks,
        "max_consecutive_failed_dag_runs": max_failed,
        "disable_bundle_versioning": no_versioning,
    }


OVERRIDES_KWARG = "property_overrides"
"""Keyword of the optimizing operators that takes the configured property overrides."""


def build_table_dag(
    settings: TableSettings,
    config: FactoryConfig,
    *,
    operators: Mapping[str, Any] | None = None,
) -> DAG:
    """Build the self-optimizing DAG of one table.

    Args:
        settings: the table's resolved settings (:meth:`FactoryConfig.resolve`).
        config: the whole configuration (defaults for retries, timeouts, polling).
        operators: operator classes by role (tests may pass others); defaults to this package's.

    Returns:
        The DAG (not yet registered anywhere; put it in a module global or return it to the caller).
    """
    from airflow.sdk import TriggerRule

    from airflow_provider_amoro.assets import table_asset_uri

    ops = operators or _Operators()
    group = settings.group
    defaults = config.defaults
    common: dict[str, Any] = {
        "table": settings.identifier,
        "amoro_conn_id": settings.conn_id,
        "priority_weight": settings.priority_weight,
        "weight_rule": "absolute",
        "retries": defaults.task_retries,
        "retry_delay": defaults.retry_delay,
        "execution_timeout": defaults.task_timeout,
    }
    overrides = dict(settings.property_overrides)
    asset_uri = table_asset_uri(settings.conn_id, settings.identifier)
    record_failure = OptimizingFailureRecorder(
        asset_uri, defaults.failure_backoff, defaults.failure_backoff_max
    )
    doc = (
        f"Self-optimizing of `{settings.identifier}` (connection `{settings.conn_id}`), generated by "
        f"the Amoro DAG factory from `{config.source or 'configuration'}`. Optimizer group "
        f"`{group.name}` (pool `{group.pool}`, {group.slots} slots), quota {settings.quota:g} → at most "
        f"{settings.max_active_tasks} execute task(s) at once."
    )
    with _dag_class()(
        dag_id=settings.dag_id,
        schedule=table_schedule(settings, defaults.change_poll_interval),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=defaults.run_timeout,
        **_dag_config_defaults(),
        tags=[*TAGS, f"group:{group.name}", f"conn:{settings.conn_id}"],
        doc_md=doc,
    ) as dag:
        resolve = ops["resolve"](task_id="resolve", **common)
        evaluate = ops["evaluate"](
            task_id="evaluate",
            pre_execute=OptimizingBackoffCheck(asset_uri),
            on_failure_callback=record_failure,
            on_success_callback=OptimizingFailureClearer(asset_uri, only_when_idle=True),
            **common,
            **{OVERRIDES_KWARG: overrides},
        )
        plan = ops["plan"](
            task_id="plan", on_failure_callback=record_failure, **common, **{OVERRIDES_KWARG: overrides}
        )
        execute_kwargs: dict[str, Any] = {
            **common,
            "pool": group.pool,
            "retries": settings.execute_retries,
            "max_active_tis_per_dagrun": settings.max_active_tasks,
            "execution_timeout": defaults.execute_timeout,
            "on_failure_callback": record_failure,
        }
        if group.queue:
            execute_kwargs["queue"] = group.queue
        execute = ops["execute"].partial(task_id="execute", **execute_kwargs).expand(task=plan.output)
        commit = ops["commit"](
            task_id="commit",
            plan_task_id="plan",
            execute_task_id="execute",
            on_failure_callback=record_failure,
            on_success_callback=OptimizingFailureClearer(asset_uri),
            **common,
        )
        resolve >> evaluate >> plan
        execute >> commit
        outcome_failed(settings, asset_uri, [resolve, evaluate, plan, execute, commit])
        previous: Any = commit
        for action, interval in settings.maintenance.items():
            task = ops[action](
                task_id=action,
                trigger_rule=TriggerRule.NONE_FAILED,
                pre_execute=MaintenanceDueCheck(action, interval, asset_uri),
                post_execute=MaintenanceRecorder(action, asset_uri),
                **common,
                **{OVERRIDES_KWARG: overrides},
            )
            previous >> task
            previous = task
    return dag


def outcome_failed(settings: TableSettings, asset_uri: str, pipeline: list[Any]) -> Any:
    """The ``optimizing_failed`` task: runs only when a pipeline task failed, and fails the DAG run.

    Maintenance tasks do not depend on it, so they still run after a failed optimizing (with
    ``none_failed`` on commit); the run itself ends **failed**, with the recorded reason in this
    task's log and in the Lakehouse page.
    """
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import TriggerRule

    task = PythonOperator(
        task_id=OUTCOME_TASK_ID,
        python_callable=OptimizingOutcome(asset_uri, settings.identifier),
        trigger_rule=TriggerRule.ONE_FAILED,
        retries=0,
        priority_weight=settings.priority_weight,
        weight_rule="absolute",
        execution_timeout=timedelta(minutes=5),
    )
    pipeline >> task
    return task


def _sync_callable(conn_id: str, config: FactoryConfig) -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        from airflow_provider_amoro.dag_factory.sync import sync_catalog

        return sync_catalog(config, conn_id)

    run.__name__ = f"sync_{conn_id}"
    return run


def build_catalog_sync_dag(config: FactoryConfig) -> DAG:
    """Build ``amoro__catalog_sync``: one task per catalog listing its tables into the cache."""
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    spec = config.catalog_sync.schedule
    with DAG(
        dag_id=CATALOG_SYNC_DAG_ID,
        schedule=None if spec.is_off else _timetable(spec),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=config.defaults.run_timeout,
        tags=[*TAGS, "catalog-sync"],
        doc_md=(
            "Lists the tables of every configured catalog and caches them (with properties and "
            f"optimizing cost) under `{config.cache_dir}`; the DAG factory reads this cache when it "
            "parses, so new tables get their DAG on the next parse after a sync."
        ),
    ) as dag:
        for conn_id in config.catalogs:
            PythonOperator(
                task_id=f"sync__{conn_id}",
                python_callable=_sync_callable(conn_id, config),
                retries=1,
                retry_delay=timedelta(seconds=30),
                execution_timeout=config.defaults.task_timeout,
            )
    return dag


def selected_tables(config: FactoryConfig, conn_id: str, cache: CatalogCache) -> list[str]:
    """The managed tables of a catalog: cached tables that the selectors pick, plus explicit names."""
    catalog = config.catalogs[conn_id]
    found = {ident for ident in cache.tables if catalog.selects(ident)}
    found.update(catalog.explicit_tables())
    return sorted(found)


def build_dags(config: FactoryConfig, *, operators: Mapping[str, Any] | None = None) -> dict[str, DAG]:
    """Build every DAG of the configuration: the catalog sync and one per selected table.

    Args:
        config: the validated configuration.
        operators: operator classes by role (tests); defaults to this package's.

    Returns:
        DAGs by dag id, the sync DAG first.

    Raises:
        ConfigError: a table's optimizer group is not configured, or two tables map to one DAG id.
    """
    # Thousands of long-lived objects are created here and none is garbage; Python's cyclic GC would
    # scan the growing heap again and again (a fifth of the parse time for 1,000 tables).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_all(config, operators or _Operators())
    finally:
        if gc_was_enabled:
            gc.enable()


def _build_all(config: FactoryConfig, ops: Mapping[str, Any]) -> dict[str, DAG]:
    dags: dict[str, DAG] = {CATALOG_SYNC_DAG_ID: build_catalog_sync_dag(config)}
    origin: dict[str, str] = {}
    for conn_id in config.catalogs:
        cache = read_cache(config.cache_dir, conn_id)
        for identifier in selected_tables(config, conn_id, cache):
            cached = cache.tables.get(identifier)
            settings = config.resolve(
                conn_id,
                identifier,
                table_properties=cached.properties if cached else None,
                cost=cached.cost if cached else None,
            )
            if settings.dag_id in dags:
                raise ConfigError(
                    ["catalogs", conn_id],
                    f"tables {origin.get(settings.dag_id)!r} and {conn_id}.{identifier!r} both map to "
                    f"DAG id {settings.dag_id!r}; exclude one of them",
                    source=config.source,
                )
            origin[settings.dag_id] = f"{conn_id}.{identifier}"
            dags[settings.dag_id] = build_table_dag(settings, config, operators=ops)
    return dags
