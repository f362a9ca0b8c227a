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
- The task set is the same for every table whatever its properties: every maintenance action
  whose interval is not ``off`` in the configuration gets its task, and a task whose action the
  table switches off (or that is not due) skips itself at run time. Nothing that changes with the
  data (cost, pending work) enters the DAG, so a catalog sync does not create DAG versions.
- Table DAGs are unpaused at creation (``paused_at_creation: false``, configurable), so their
  asset watchers run from the first parse.
- A worker parsing the file to run one task builds only that task's DAG
  (``get_parsing_context()``).
- A table whose DAG cannot be built (a bad per-table setting) gets a one-task placeholder DAG that
  fails with the message and keeps the table's assets (and so its runtime state) alive; the other
  tables are not affected.

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
from airflow_provider_amoro.runtime.state import table_dag_id

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

    from airflow_provider_amoro.assets import table_change_asset, table_change_asset_uri
    from airflow_provider_amoro.triggers.table_change import TableChangeTrigger

    trigger = TableChangeTrigger(
        table=settings.identifier,
        amoro_conn_id=settings.conn_id,
        ignore_optimizer=True,
        poll_interval=poll_interval.total_seconds(),
        watched_asset=table_change_asset_uri(settings.conn_id, settings.identifier),
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
    """``pre_execute`` hook of a maintenance task: skip it unless it is on and its interval has passed.

    The last run is read from the table's runtime state (asset state store, through the Task SDK).
    A table never maintained, or state that cannot be read, counts as due. When it is due, the
    table's properties (with the task's defaults and overrides) decide whether the action is on
    (Amoro's switches, :func:`~.config.maintenance_disabled_reason`); off skips the task.

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
        if last is not None and last.success:
            age_ms = int(time.time() * 1000) - int(last.time_ms)
            if age_ms < self.interval.total_seconds() * 1000:
                raise AirflowSkipException(
                    f"{self.action} ran {age_ms / 1000:.0f} s ago; its interval is "
                    f"{self.interval.total_seconds():.0f} s"
                )
        task = context.get("task")
        if task is None or not hasattr(task, "load_table"):
            return
        from airflow_provider_amoro.dag_factory.config import maintenance_disabled_reason

        table = task.load_table()
        if hasattr(task, "hold_lease"):
            table = task.hold_lease(table)  # another deployment holds the table: skip
        own = dict(table.properties)
        effective = {**own, **task.layered_properties(own, getattr(task, "property_overrides", None))}
        reason = maintenance_disabled_reason(self.action, effective)
        if reason is not None:
            raise AirflowSkipException(f"{self.action} is off for this table: {reason}")


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


class ScheduledMaintenance:
    """Mixin for a maintenance operator in a generated DAG: due check before, record after.

    Methods rather than ``pre_execute=``/``post_execute=`` callables: Airflow serializes such
    callables as their Python source (``inspect.getsource`` for every task of every DAG), which was
    half the serialization time of the generated DAGs. The run is recorded by the ``execute`` that
    :func:`scheduled_maintenance_class` adds (Airflow calls a ``post_execute`` method without the
    result).

    The builder sets ``maintenance_interval`` (minimum time between two runs of the action) on the
    task it made: an ``__init__`` of the mixin would be one more level of Airflow's per-``__init__``
    default-argument merging for every maintenance task of every DAG parsed.
    """

    task_id: str
    asset_uri: str
    maintenance_interval: timedelta

    def pre_execute(self, context: Any) -> None:
        """Skip the task unless the action is on for the table and its interval has passed."""
        MaintenanceDueCheck(self.task_id, self.maintenance_interval, self.asset_uri)(context)
        super().pre_execute(context)  # type: ignore[misc]


@lru_cache(maxsize=64)
def scheduled_maintenance_class(cls: type[Any]) -> type[Any]:
    """``cls`` with :class:`ScheduledMaintenance` mixed in, under the same name (shown in the UI).

    It takes ``cls``'s arguments; set ``maintenance_interval`` on each task made. A class that
    already has the mixin is returned as it is.
    """
    if issubclass(cls, ScheduledMaintenance):
        return cls

    def execute(self: Any, context: Any) -> Any:
        # in the class namespace, so that Airflow's operator metaclass guards it like any execute
        result = super(new_cls, self).execute(context)
        MaintenanceRecorder(self.task_id, self.asset_uri)(context, result)
        return result

    new_cls = _mixed_in(ScheduledMaintenance, cls, execute=execute)
    return new_cls


def _mixed_in(mixin: type[Any], cls: type[Any], **methods: Any) -> type[Any]:
    """``cls`` with ``mixin`` before it (and ``methods`` in the new class's own namespace), under
    ``cls``'s name and docstring, so Airflow's UI shows the operator it knows."""
    namespace = {"__doc__": cls.__doc__, "__module__": __name__, **methods}
    return type(cls.__name__, (mixin, cls), namespace)


class FailureBackoff:
    """Mixin for the evaluate task of a generated DAG: skipped while the last failure's backoff runs.

    A ``pre_execute`` method rather than a ``pre_execute=`` callable, for the reason
    :class:`ScheduledMaintenance` gives (Airflow would serialize the callable's source).
    """

    asset_uri: str

    def pre_execute(self, context: Any) -> None:
        """Skip the task (and so the pipeline after it) before the recorded next attempt time."""
        OptimizingBackoffCheck(self.asset_uri)(context)
        super().pre_execute(context)  # type: ignore[misc]


@lru_cache(maxsize=64)
def failure_backoff_class(cls: type[Any]) -> type[Any]:
    """``cls`` with :class:`FailureBackoff` mixed in, under the same name (shown in the UI)."""
    return cls if issubclass(cls, FailureBackoff) else _mixed_in(FailureBackoff, cls)


class _Operators(dict[str, Any]):
    """Operator classes by role, imported on first use (a DAG without maintenance imports none).

    The builder mixes :class:`ScheduledMaintenance` into the maintenance operators.
    """

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


_EXECUTOR_CONFIGS: dict[int, tuple[Mapping[str, Any], dict[str, Any]]] = {}


def executor_config(spec: Mapping[str, Any]) -> dict[str, Any]:
    """An optimizer group's ``executor_config`` as Airflow expects it.

    ``pod_override`` may be written in the YAML as a Kubernetes pod mapping (``spec.containers[0]
    .resources`` …); it is turned into the ``V1Pod`` the KubernetesExecutor needs (the
    ``cncf.kubernetes`` provider must be installed). Other keys pass through unchanged. Converted
    once per group and parse.
    """
    memo = _EXECUTOR_CONFIGS.get(id(spec))
    if memo is not None and memo[0] is spec:
        return memo[1]
    out = dict(spec)
    pod = out.get("pod_override")
    if isinstance(pod, Mapping):
        try:
            from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
        except ImportError as exc:
            raise ConfigError(
                ["optimizer_groups", "executor_config", "pod_override"],
                f"needs the apache-airflow-providers-cncf-kubernetes package: {exc}",
            ) from None
        out["pod_override"] = PodGenerator.deserialize_model_dict(dict(pod))
    _EXECUTOR_CONFIGS[id(spec)] = (spec, out)
    return out


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

    ops = operators if operators is not None else _Operators()
    group = settings.group
    defaults = config.defaults
    common = _common_task_kwargs(settings, config)
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
        is_paused_upon_creation=settings.paused_at_creation,
        dagrun_timeout=defaults.run_timeout,
        **_dag_config_defaults(),
        tags=[*TAGS, f"group:{group.name}", f"conn:{settings.conn_id}"],
        doc_md=doc,
    ) as dag:
        resolve = ops["resolve"](task_id="resolve", **common)
        evaluate = failure_backoff_class(ops["evaluate"])(
            task_id="evaluate",
            on_failure_callback=record_failure,
            on_success_callback=OptimizingFailureClearer(asset_uri, only_when_idle=True),
            **common,
            **{OVERRIDES_KWARG: overrides},
            **({"renamed_from": settings.renamed_from} if settings.renamed_from else {}),
        )
        plan = ops["plan"](
            task_id="plan",
            on_failure_callback=record_failure,
            **common,
            **{OVERRIDES_KWARG: overrides},
            **({"max_input_bytes": group.max_input_bytes} if group.max_input_bytes else {}),
        )
        execute_kwargs = _execute_task_kwargs(settings, config, common, record_failure)
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
            task = scheduled_maintenance_class(ops[action])(
                task_id=action,
                trigger_rule=TriggerRule.NONE_FAILED,
                **common,
                **{OVERRIDES_KWARG: overrides},
            )
            task.maintenance_interval = interval
            previous >> task
            previous = task
    return dag


def _common_task_kwargs(settings: TableSettings, config: FactoryConfig) -> dict[str, Any]:
    """Keyword arguments every task of a table's DAG gets."""
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
    if settings.property_defaults:
        common["property_defaults"] = dict(settings.property_defaults)
    if config.deployment:
        common["lease_owner"] = config.deployment
    return common


def _execute_task_kwargs(
    settings: TableSettings, config: FactoryConfig, common: dict[str, Any], record_failure: Any
) -> dict[str, Any]:
    """Keyword arguments of the mapped execute tasks: the optimizer group's pool, queue and executor."""
    from airflow_provider_amoro.assets import table_asset

    group = settings.group
    execute_kwargs: dict[str, Any] = {
        **common,
        "pool": group.pool,
        "retries": settings.execute_retries,
        "max_active_tis_per_dagrun": settings.max_active_tasks,
        "execution_timeout": config.defaults.execute_timeout,
        # a mapped task's inlets come from partial(), not from the operator's __init__: declare
        # the table asset here, so the execute tasks reach the table's state store
        "inlets": [table_asset(settings.conn_id, settings.identifier)],
        "on_failure_callback": record_failure,
    }
    if group.queue:
        execute_kwargs["queue"] = group.queue
    if group.executor:
        execute_kwargs["executor"] = group.executor
    if group.executor_config:
        execute_kwargs["executor_config"] = executor_config(group.executor_config)
    return execute_kwargs


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
        is_paused_upon_creation=config.catalog_sync.paused_at_creation,
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


def shard_of(dag_id: str, shards: int) -> int:
    """The DAG file (shard index) a table DAG belongs to: a stable hash of its id modulo ``shards``."""
    import zlib

    return zlib.crc32(dag_id.encode()) % shards if shards > 1 else 0


def build_dags(
    config: FactoryConfig, *, operators: Mapping[str, Any] | None = None, shard: int | None = None
) -> dict[str, DAG]:
    """Build every DAG of the configuration: the catalog sync and one per selected table.

    Args:
        config: the validated configuration.
        operators: operator classes by role (tests); defaults to this package's.
        shard: with ``shards: N`` in the configuration, the index (0 to N-1) of the DAG file calling:
            only the tables of that shard (:func:`shard_of`) are built, and the sync DAG in shard 0.

    Returns:
        DAGs by dag id, the sync DAG first.

    A table whose settings are invalid (e.g. its ``self-optimizing.group`` is not configured) is
    logged at ERROR level and gets a placeholder DAG (:func:`build_broken_table_dag`); the others
    are built as usual. Inside a worker (``get_parsing_context().dag_id`` set) only that DAG is built.
    """
    # Thousands of long-lived objects are created here and none is garbage; Python's cyclic GC would
    # scan the growing heap again and again (a fifth of the parse time for 1,000 tables).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_all(config, operators if operators is not None else _Operators(), _shard(config, shard))
    finally:
        if gc_was_enabled:
            gc.enable()


class _TableError:
    """``python_callable`` of a broken table's placeholder task: fail with the reason."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.__name__ = "report_table_error"

    def __call__(self) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(self.message)


def build_broken_table_dag(conn_id: str, identifier: str, dag_id: str, error: str) -> DAG:
    """A placeholder for a table whose DAG cannot be built: one task that fails with ``error``.

    It keeps the table asset (inlet of its task) referenced by a DAG, so Airflow does not take the
    asset for orphaned and delete its runtime state (history, maintenance times) while the
    table's settings are being fixed. Not scheduled; paused at creation.
    """
    from airflow.providers.standard.operators.python import PythonOperator

    from airflow_provider_amoro.assets import table_asset

    with _dag_class()(
        dag_id=dag_id,
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=True,
        **_dag_config_defaults(),
        tags=[*TAGS, "config-error", f"conn:{conn_id}"],
        doc_md=f"**Configuration error** for `{identifier}` (connection `{conn_id}`): {error}",
    ) as dag:
        PythonOperator(
            task_id="configuration_error",
            python_callable=_TableError(error),
            inlets=[table_asset(conn_id, identifier)],
            retries=0,
        )
    return dag


TABLE_ERRORS: dict[str, str] = {}
"""Tables skipped at the last parse in this process: ``conn.namespace.table`` → message (for logs/UI)."""


def _parsing_dag_id() -> str | None:
    """The DAG a worker parses the file for (``get_parsing_context()``), None in the DAG processor."""
    try:
        from airflow.sdk import get_parsing_context
    except ImportError:  # pragma: no cover - Airflow 3 always has it
        return None
    return get_parsing_context().dag_id


def _shard(config: FactoryConfig, shard: int | None) -> int:
    if config.shards == 1:
        if shard not in (None, 0):
            raise ConfigError(["shards"], f"is 1 but a DAG file asks for shard {shard}", source=config.source)
        return 0
    if shard is None or not 0 <= shard < config.shards:
        raise ConfigError(
            ["shards"],
            f"is {config.shards}: each DAG file must call generate_dags(..., shard=i) with i from 0 to "
            f"{config.shards - 1}, got {shard!r}",
            source=config.source,
        )
    return shard


def _build_all(config: FactoryConfig, ops: Mapping[str, Any], shard: int = 0) -> dict[str, DAG]:
    wanted = _parsing_dag_id()
    dags: dict[str, DAG] = {}
    if shard == 0 and (wanted is None or wanted == CATALOG_SYNC_DAG_ID):
        dags[CATALOG_SYNC_DAG_ID] = build_catalog_sync_dag(config)
        if wanted is not None:
            return dags
    origin: dict[str, str] = {}
    TABLE_ERRORS.clear()
    for conn_id in config.catalogs:
        cache = read_cache(config.cache_dir, conn_id)
        for identifier in selected_tables(config, conn_id, cache):
            dag_id = table_dag_id(conn_id, identifier)
            if (wanted is not None and dag_id != wanted) or shard_of(dag_id, config.shards) != shard:
                continue
            name = f"{conn_id}.{identifier}"
            if dag_id in origin or dag_id == CATALOG_SYNC_DAG_ID:
                _table_error(
                    name, f"its DAG id {dag_id!r} is already used by {origin.get(dag_id, dag_id)!r}", config
                )
                continue
            origin[dag_id] = name
            cached = cache.tables.get(identifier)
            try:
                settings = config.resolve(
                    conn_id,
                    identifier,
                    table_properties=cached.properties if cached else None,
                    cost=cached.cost if cached else None,
                )
                if cached is not None and cached.renamed_from:
                    from dataclasses import replace

                    settings = replace(settings, renamed_from=cached.renamed_from)
                dags[dag_id] = build_table_dag(settings, config, operators=ops)
            except Exception as exc:  # noqa: BLE001 - one bad table must not take down the others
                message = _table_error(name, str(exc), config)
                try:
                    dags[dag_id] = build_broken_table_dag(conn_id, identifier, dag_id, message)
                except Exception as inner:  # noqa: BLE001 - then skip it; the log says why
                    log.error("Amoro DAG factory: no placeholder DAG for %s either: %s", name, inner)
    return dags


def _table_error(name: str, problem: str, config: FactoryConfig) -> str:
    message = f"table {name} skipped: {problem}"
    TABLE_ERRORS[name] = message
    log.error("Amoro DAG factory (%s): %s", config.source or "configuration", message)
    return message
