"""Self-optimizing operators: thin wrappers over the engine (:mod:`airflow_provider_amoro.optimizing`).

One task for the whole process:

- :class:`SelfOptimizingOperator` (kind chosen by evaluation), :class:`MinorOptimizingOperator`,
  :class:`MajorOptimizingOperator`, :class:`FullOptimizingOperator` (kind forced).

The split for generated DAGs (Airflow's executors are the optimizers)::

    evaluate = EvaluateOptimizingOperator(task_id="evaluate", table="db.t")
    plan = PlanOptimizingOperator(task_id="plan", table="db.t")
    execute = ExecuteOptimizingTaskOperator.partial(
        task_id="execute", table="db.t", inlets=[table_asset("amoro_default", "db.t")]
    ).expand(task=plan.output)
    commit = CommitOptimizingOperator(
        task_id="commit", table="db.t", plan_task_id="plan", execute_task_id="execute"
    )
    evaluate >> plan
    execute >> commit

A mapped task takes its inlets from ``partial()``: pass the table asset there
(``airflow_provider_amoro.assets.table_asset``), or the execute tasks cannot reach the table's
runtime state (they record the status; the optimizing itself works either way).

**Skipping when nothing is pending.** ``EvaluateOptimizingOperator`` skips, when the evaluation finds
no work, every *optimizing-pipeline* task downstream of it (plan, execute, commit: recognised by
their operator class, wherever they sit downstream), and nothing else. Other downstream tasks
(maintenance) stay runnable: give them ``trigger_rule="none_failed"`` when they hang after
``commit``, so a skipped commit lets them run. ``skip_when_idle=False`` turns this off.

**Commit and failures.** ``CommitOptimizingOperator`` runs with ``trigger_rule="all_done"``: it also
runs after failed execute tasks, so it can record the failed process and remove the files the
successful tasks wrote (the engine's ``commit`` deletes outputs, that no snapshot references, when
the commit surely did not land). A failed process is not retried in the same run (the outputs are
gone); the table stays *pending* and is planned again by the next run. The commit is idempotent: a
retried or cleared commit finds the landed snapshot by the plan id in its summary, so it never
commits twice nor deletes committed files. When the outcome is unknown (``CommitStateUnknownException``,
a timeout, an unexpected error) the outputs are kept and the process is recorded ``UNKNOWN``; the
next run's :class:`ResolveOptimizingOperator` (first task of a generated DAG; one-task optimizers
do the same at their start) settles it and deletes the last process's unreferenced files.

``self-optimizing.execute.num-retries`` maps to the execute tasks' ``retries``
(:func:`retries_for`); a worker killed mid-task is retried by Airflow, and the status readers
derive from live task states can never stay stuck.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import SkipMixin, TriggerRule

from airflow_provider_amoro.operators.base import PRODUCER_OPTIMIZER, AmoroTableOperator
from airflow_provider_amoro.properties import EXECUTE_NUM_RETRIES, EXECUTE_NUM_RETRIES_DEFAULT, OptimizingKind
from airflow_provider_amoro.runtime.reader import PLAN_XCOM_KEY
from airflow_provider_amoro.runtime.recorder import TableStateRecorder, now_ms
from airflow_provider_amoro.runtime.state import (
    TASKS_PER_PROCESS_LIMIT,
    ProcessRecord,
    ProcessStatus,
    TableStatus,
    TaskRecord,
)

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from airflow_provider_amoro.optimizing import (
        CommitResult,
        OptimizingConfig,
        OptimizingPlan,
        TaskResult,
    )
    from airflow_provider_amoro.optimizing.process import OptimizingProcess

PARTITIONS_KEPT = 20
"""Pending partitions kept in an evaluation's XCom / runtime record (largest cost first)."""


def retries_for(table_properties: Mapping[str, str] | None) -> int:
    """Airflow ``retries`` of an execute task: ``self-optimizing.execute.num-retries`` (Amoro default 5).

    Args:
        table_properties: the table's properties (with any configured overrides applied).

    Raises:
        ValueError: the property is not a non-negative integer.
    """
    raw = (table_properties or {}).get(EXECUTE_NUM_RETRIES)
    if raw is None or str(raw).strip() == "":
        return EXECUTE_NUM_RETRIES_DEFAULT
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{EXECUTE_NUM_RETRIES} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{EXECUTE_NUM_RETRIES} must be >= 0, got {raw!r}")
    return value


def evaluation_summary(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """A small evaluation dict: totals, reasons, pending input and the top pending partitions."""
    out = {k: v for k, v in evaluation.items() if k not in ("partitions", "properties")}
    pending = [p for p in evaluation.get("partitions") or [] if p.get("kind")]
    pending.sort(key=lambda p: int(p.get("cost") or 0), reverse=True)
    kind = evaluation.get("kind")

    def files_of(p: Mapping[str, Any], suffix: str) -> int:
        if kind == "full":
            base = int(p.get(f"data_{suffix}") or 0)
        else:
            base = sum(
                int(p.get(f"{c}_{suffix}") or 0)
                for c in ("fragment", "undersized", "rewrite_segment", "rewrite_pos_segment")
            )
        return base + int(p.get(f"pos_delete_{suffix}") or 0) + int(p.get(f"eq_delete_{suffix}") or 0)

    reasons = list(evaluation.get("reasons") or [])
    if len(reasons) > PARTITIONS_KEPT:
        reasons = [*reasons[:PARTITIONS_KEPT], f"... and {len(reasons) - PARTITIONS_KEPT} more"]
    out["reasons"] = reasons
    out["pending_partitions"] = len(pending)
    out["pending_input_files"] = sum(files_of(p, "files") for p in pending)
    out["pending_input_bytes"] = sum(files_of(p, "bytes") for p in pending)
    out["partitions"] = pending[:PARTITIONS_KEPT]
    return out


def _is_pipeline_task(task: Any) -> bool:
    """Whether a (possibly mapped) task is a plan, execute or commit task of the split operators."""
    cls = getattr(task, "operator_class", None) or type(task)
    if isinstance(cls, type) and issubclass(
        cls, (PlanOptimizingOperator, ExecuteOptimizingTaskOperator, CommitOptimizingOperator)
    ):
        return True
    name = getattr(task, "custom_operator_name", None) or getattr(task, "task_type", "")
    return name in ("PlanOptimizingOperator", "ExecuteOptimizingTaskOperator", "CommitOptimizingOperator")


class _OptimizingOperator(AmoroTableOperator):
    """Common parts: optimizer event producer, configuration with overrides, last times."""

    event_producer = PRODUCER_OPTIMIZER

    def optimizing_config(self, table: Table, planned: Mapping[str, str] | None = None) -> OptimizingConfig:
        """The table's ``self-optimizing.*`` configuration with overrides applied.

        Args:
            table: the table.
            planned: the effective properties a plan was made with (they win over the table's own,
                so every task of a process works with the configuration it was planned with).
        """
        from airflow_provider_amoro.optimizing import OptimizingConfig

        props = {**self.property_defaults, **table.properties, **(planned or {}), **self.property_overrides}
        return OptimizingConfig.from_properties(props, schema=table.schema())

    def run_process_id(self, context: Mapping[str, Any]) -> str:
        """``<dag_id>/<run_id>``: the process id of the split operators (one process per run)."""
        ti = context.get("ti")
        return f"{getattr(ti, 'dag_id', '')}/{getattr(ti, 'run_id', '')}"

    def one_task_process_id(self, context: Mapping[str, Any]) -> str:
        """``<dag_id>/<run_id>/<task_id>``: the process id of a one-task optimizer."""
        ti = context.get("ti")
        return (
            f"{getattr(ti, 'dag_id', '')}/{getattr(ti, 'run_id', '')}/{getattr(ti, 'task_id', self.task_id)}"
        )

    def process_args(
        self, context: Mapping[str, Any], plan: OptimizingPlan, *, one_task: bool, table: Table | None = None
    ) -> dict[str, Any]:
        """Identity of the process this task belongs to, as keyword arguments of ``_process``.

        The process id is ``<dag_id>/<run_id>`` for the split operators (one process per run) and
        ``<dag_id>/<run_id>/<task_id>`` for one-task operators. With ``table``, the folders the
        plan's tasks write into are included (recorded before any output is written).
        """
        from airflow_provider_amoro.optimizing.cleanup import output_folders

        ti = context.get("ti")
        dag_id, run_id = str(getattr(ti, "dag_id", "")), str(getattr(ti, "run_id", ""))
        process_id = self.one_task_process_id(context) if one_task else self.run_process_id(context)
        return {
            "process_id": process_id,
            "table": self.table,
            "conn_id": self.amoro_conn_id,
            "dag_id": dag_id,
            "run_id": run_id,
            "plan": plan,
            "output_folders": output_folders(table, plan) if table is not None and plan.tasks else [],
        }


def _task_records(plan: OptimizingPlan, results: Iterable[TaskResult]) -> list[TaskRecord]:
    from airflow_provider_amoro.optimizing.model import IOCounters

    by_id = {r.task_id: r for r in results}
    records = []
    for t in plan.tasks[:TASKS_PER_PROCESS_LIMIT]:
        rec = TaskRecord(task_id=t.task_id, partition=t.partition_path, status=ProcessStatus.FAILED.value)
        rec.set_counters(IOCounters.planned(t))
        r = by_id.get(t.task_id)
        if r is not None:
            rec.status = ProcessStatus.SUCCESS.value
            rec.set_counters(IOCounters.of_result(r))
            rec.duration_s = r.duration_s
        records.append(rec)
    return records


def _process(
    *,
    process_id: str,
    table: str,
    conn_id: str,
    dag_id: str,
    run_id: str,
    plan: OptimizingPlan,
    results: Sequence[TaskResult] = (),
    status: ProcessStatus = ProcessStatus.RUNNING,
    snapshot_id: int | None = None,
    failure: str | None = None,
    summary: Mapping[str, Any] | None = None,
    output_folders: Sequence[str] = (),
) -> ProcessRecord:
    """The runtime record of the engine's process (its plan and the results so far)."""
    from airflow_provider_amoro.optimizing.process import OptimizingProcess

    process = OptimizingProcess.of_plan(plan, results)
    proc = ProcessRecord(
        process_id=process_id,
        table=table,
        conn_id=conn_id,
        kind=None if plan.kind is None else plan.kind.value,
        status=status.value,
        dag_id=dag_id,
        run_id=run_id,
        base_snapshot_id=plan.base_snapshot_id,
        committed_snapshot_id=snapshot_id,
        plan_time_ms=plan.created_at_ms,
        end_time_ms=None if status is ProcessStatus.RUNNING else now_ms(),
        task_count=len(plan.tasks),
        failure=failure,
        summary={"partitions": plan.partitions[:PARTITIONS_KEPT], **(summary or {})},
        tasks=_task_records(plan, results) if results or status is not ProcessStatus.RUNNING else [],
        plan_id=plan.plan_id,
        base_sequence_number=plan.base_sequence_number,
        output_folders=list(output_folders),
    )
    proc.set_counters(process.counters())
    return proc


def _metrics(proc: ProcessRecord, commit: CommitResult | None) -> dict[str, Any]:
    """The small metrics dict returned to XCom and put into the asset event."""
    out: dict[str, Any] = {
        "kind": proc.kind,
        "status": proc.status,
        "snapshot_id": proc.committed_snapshot_id,
        "base_snapshot_id": proc.base_snapshot_id,
        "tasks": proc.task_count,
        **proc.counters_dict(),
    }
    if commit is not None:
        out.update(
            removed_data_files=commit.removed_data_files,
            added_data_files=commit.added_data_files,
            removed_delete_files=commit.removed_delete_files,
            added_delete_files=commit.added_delete_files,
            commit_attempts=commit.attempts,
            commit_duration_s=round(commit.duration_s, 3),
        )
    if proc.failure:
        out["failure"] = proc.failure
    return out


def _record_success(
    state: TableStateRecorder,
    proc: ProcessRecord,
) -> None:
    state.record_optimized(kind=proc.kind, snapshot_id=proc.committed_snapshot_id)
    state.append_history(proc)
    state.record_process(proc)
    state.set_status(TableStatus.IDLE)


def _record_failure(state: TableStateRecorder, proc: ProcessRecord) -> None:
    """A failed (or UNKNOWN) process: history, current process, and the table back to PENDING."""
    state.append_history(proc)
    state.record_process(proc)
    state.set_status(TableStatus.PENDING, proc.kind)


def _known_not_landed(exc: BaseException) -> bool:
    """Whether a commit error proves nothing was committed (refused before or by the catalog)."""
    from pyiceberg.exceptions import CommitFailedException

    from airflow_provider_amoro.optimizing.commit import CommitValidationError

    return isinstance(exc, (CommitValidationError, CommitFailedException))


def _commit_failed(
    state: TableStateRecorder, common: Mapping[str, Any], exc: BaseException, what: str, log: Any
) -> Exception | None:
    """Record a failed commit; return the exception to raise (None: re-raise ``exc`` as it is).

    Known not to have landed (validation, conflicts): ``FAILED``; the engine already deleted the
    outputs nothing references. Anything else (``CommitStateUnknownException``, a task timeout,
    an unexpected error): ``UNKNOWN``, outputs kept, resolved by the next run before it plans.
    """
    from airflow.sdk.exceptions import AirflowFailException

    failure = f"{type(exc).__name__}: {exc}"
    if _known_not_landed(exc):
        _record_failure(state, _process(**common, status=ProcessStatus.FAILED, failure=failure))
        return AirflowFailException(f"{what} failed: {failure}")
    log.error("%s: outcome unknown (%s); outputs kept, the next run resolves the process", what, failure)
    _record_failure(state, _process(**common, status=ProcessStatus.UNKNOWN, failure=failure))
    return None


def resolve_previous_process(
    state: TableStateRecorder,
    table: Table,
    log: Any,
    *,
    own_process_id: str | None = None,
) -> dict[str, Any] | None:
    """Resolve and tear down the table's last process before anything new is planned.

    An ``UNKNOWN`` process (or a ``RUNNING`` one whose run died) is looked up by its plan id:
    landed → ``SUCCESS`` (and the table's last optimized snapshot recorded); not landed → its
    outputs are deleted. For every finished process not torn down yet, the output files found
    under its recorded folders that no retained snapshot references are deleted (outputs of
    killed workers, of retried tasks, of abandoned runs). Logged with counts and recorded in the
    process's ``teardown``.

    Args:
        state: the table's runtime-state recorder.
        table: the table.
        log: logger.
        own_process_id: the caller's own process id: a ``RUNNING`` record with it is a dead
            earlier attempt of the caller (a retried one-task optimizer), not a live process.

    Returns:
        The teardown record, or None when there was nothing to do.

    Raises:
        RuntimeError: an ``UNKNOWN`` process cannot be resolved (storage or catalog unreachable);
            nothing new must be planned until it is.
    """
    from airflow_provider_amoro.optimizing.cleanup import resolve_process

    proc = state.current_process(live=True)
    if proc is None or not proc.plan_id or proc.teardown is not None or not proc.task_count:
        return None
    if proc.status == ProcessStatus.RUNNING.value and proc.process_id != own_process_id:
        log.info("process %s (run %s) is still running: left alone", proc.plan_id, proc.run_id)
        return None
    before = proc.status
    outcome = resolve_process(
        table, proc.plan_id, proc.output_folders, min_sequence_number=proc.base_sequence_number
    )
    if outcome.landed is None:
        if before == ProcessStatus.UNKNOWN.value:
            raise RuntimeError(
                f"cannot resolve the UNKNOWN optimizing process {proc.plan_id} of {proc.table}: "
                f"{outcome.cleanup.error}; nothing is planned until it is resolved"
            )
        log.warning("teardown of process %s postponed: %s", proc.plan_id, outcome.cleanup.error)
        return None
    unresolved = (ProcessStatus.UNKNOWN.value, ProcessStatus.CLOSED.value)
    if before in unresolved and outcome.landed:
        proc.status = ProcessStatus.SUCCESS.value
        proc.committed_snapshot_id = outcome.snapshot_id
        state.record_optimized(kind=proc.kind, snapshot_id=outcome.snapshot_id)
    elif before == ProcessStatus.UNKNOWN.value:
        proc.status = ProcessStatus.FAILED.value
        proc.failure = f"{proc.failure or 'outcome unknown'}; resolved: the commit did not land"
    proc.end_time_ms = proc.end_time_ms or now_ms()
    proc.teardown = {**outcome.to_dict(), "previous_status": before, "resolved_ms": now_ms()}
    state.record_process(proc)
    if proc.status != before:
        state.append_history(proc)
    log.info(
        "teardown of process %s (%s -> %s): %d output files found, %d deleted, %d kept (referenced), "
        "%d failed",
        proc.plan_id,
        before,
        proc.status,
        outcome.listed,
        outcome.cleanup.deleted,
        outcome.cleanup.kept_referenced,
        outcome.cleanup.failed,
    )
    return proc.teardown


# ---- split operators ------------------------------------------------------------------------------


class ResolveOptimizingOperator(_OptimizingOperator):
    """First task of a table's DAG: resolves the last process and removes its leftover files.

    Runs :func:`resolve_previous_process`: an ``UNKNOWN`` commit is settled by the plan id in the
    table's snapshots (landed → ``SUCCESS``; not landed → outputs deleted), and files of the last
    process that no retained snapshot references (outputs of killed workers, retried tasks, dead
    runs) are deleted. Returns the teardown record (None when there was nothing to do). Fails,
    so that nothing new is planned, when an ``UNKNOWN`` process cannot be resolved.

    Args:
        table: ``namespace.table`` (templated).
        amoro_conn_id: catalog connection id (templated).
        **kwargs: ``BaseOperator`` arguments.
    """

    custom_operator_name = "ResolveOptimizingOperator"
    ui_color = "#f3ecd8"

    def execute(self, context: Any) -> dict[str, Any] | None:
        """Resolve and tear down the previous process."""
        # this task runs before plan: a RUNNING process of this very run is an earlier, cleared attempt
        return resolve_previous_process(
            self.state(context), self.load_table(), self.log, own_process_id=self.run_process_id(context)
        )


class EvaluateOptimizingOperator(_OptimizingOperator, SkipMixin):
    """Evaluates a table (read-only); returns the evaluation summary dict.

    When nothing is pending it skips the optimizing-pipeline tasks downstream of it (plan, execute,
    commit) and leaves every other task runnable (see the module docs).

    Args:
        table: ``namespace.table`` (templated).
        amoro_conn_id: catalog connection id (templated).
        property_overrides: ``self-optimizing.*`` properties overriding the table's own.
        skip_when_idle: skip the downstream pipeline when nothing is pending (default True).
        renamed_from: the table's former ``namespace.table`` after a rename (the DAG factory passes
            it from the catalog sync): its recorded state is adopted when the UUIDs match.
        **kwargs: ``BaseOperator`` arguments.

    The runtime state is the table's by UUID (:meth:`TableStateRecorder.claim`): a table dropped and
    re-created under the same name starts with a fresh state.
    """

    custom_operator_name = "EvaluateOptimizingOperator"
    ui_color = "#e8f4fa"

    def __init__(
        self, *, skip_when_idle: bool = True, renamed_from: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.skip_when_idle = skip_when_idle
        self.renamed_from = renamed_from
        if renamed_from:
            from airflow_provider_amoro.assets import table_asset

            # the state recorded under the former name is read through this task's own inlet
            self.inlets = [*list(self.inlets or []), table_asset(self.amoro_conn_id, renamed_from)]

    def execute(self, context: Any) -> dict[str, Any]:
        """Claim the state for this table's UUID; evaluate; record the pending state; skip when idle."""
        from airflow_provider_amoro.assets import table_asset_uri
        from airflow_provider_amoro.optimizing import evaluate

        state = self.state(context)
        table = self.hold_lease(self.load_table())
        previous = None
        if self.renamed_from:
            previous = TableStateRecorder(context, table_asset_uri(self.amoro_conn_id, self.renamed_from))
        uuid = getattr(table.metadata, "table_uuid", None)
        state.claim(str(uuid) if uuid else None, self.table, previous=previous)
        evaluation = evaluate(table, config=self.optimizing_config(table), **state.last_times())
        summary = evaluation_summary(evaluation.to_dict())
        summary["evaluated_ms"] = now_ms()
        state.record_evaluation(summary)
        state.set_status(
            TableStatus.PENDING if summary.get("kind") else TableStatus.IDLE, summary.get("kind")
        )
        self.log.info(
            "%s: kind=%s health=%s cost=%s reasons=%s",
            self.table,
            summary.get("kind"),
            summary.get("health_score"),
            summary.get("cost"),
            summary.get("reasons"),
        )
        if summary.get("kind") is None and self.skip_when_idle:
            pipeline = [t for t in self.get_flat_relatives(upstream=False) if _is_pipeline_task(t)]
            if pipeline:
                self.log.info("nothing pending: skipping %s", sorted(t.task_id for t in pipeline))
                context["ti"].xcom_push(key="return_value", value=summary)
                self.skip(context["ti"], pipeline)
        return summary


PLAN_TASKS_DIR = "amoro-plans"
"""Folder under the table's location holding the task lists of plans (outside ``data/`` and
``metadata/``, so orphan cleanup never looks at it)."""

TASKS_LOCATION_KEY = "tasks_location"
"""Key of the plan header naming the file that holds the plan's tasks."""

PLAN_PROPERTIES_XCOM_KEY = "plan_properties"
"""XCom key of what a mapped execute task needs from its plan: the planned properties and the task
file (the full header also holds per-partition summaries, as many as the plan has tasks)."""


def plan_tasks_location(table: Table, dag_id: str, run_id: str) -> str:
    """Where the task list of the plan made by run ``run_id`` of ``dag_id`` is stored."""
    import re

    safe = re.sub(r"[^A-Za-z0-9_.=-]", "_", f"{dag_id}__{run_id}")
    return f"{table.location().rstrip('/')}/{PLAN_TASKS_DIR}/{safe}.jsonl"


def write_plan_tasks(table: Table, location: str, tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Store the tasks as JSON lines in the warehouse; return one small reference per task.

    A reference is ``{"ref": [offset, length]}``: the byte range of the task's line, so a mapped
    execute task reads its own task with one ranged read and nothing else.
    """
    import json

    lines = [json.dumps(dict(t), separators=(",", ":")).encode() + b"\n" for t in tasks]
    refs: list[dict[str, Any]] = []
    offset = 0
    for line in lines:
        refs.append({"ref": [offset, len(line)]})
        offset += len(line)
    with table.io.new_output(location).create(overwrite=True) as out:
        out.write(b"".join(lines))
    return refs


def read_plan_task(table: Table, location: str, ref: Sequence[int]) -> dict[str, Any]:
    """One task of a stored plan, read by its byte range."""
    import json

    offset, length = int(ref[0]), int(ref[1])
    with table.io.new_input(location).open() as stream:
        stream.seek(offset)
        data = stream.read(length)
    task: dict[str, Any] = json.loads(data)
    return task


def read_plan_tasks(table: Table, location: str) -> list[dict[str, Any]]:
    """Every task of a stored plan (the commit needs them all)."""
    import json

    with table.io.new_input(location).open() as stream:
        data = stream.read()
    return [json.loads(line) for line in data.splitlines() if line.strip()]


class PlanOptimizingOperator(_OptimizingOperator):
    """Plans one optimizing process; returns one small reference per task (for ``.expand(task=…)``).

    The tasks themselves are stored in the warehouse (``<table location>/amoro-plans/<dag>__<run>.jsonl``)
    and the return value holds only ``{"ref": [offset, length]}`` per task: each mapped execute task
    resolves this list (Airflow pulls it whole for every mapped task) and reads just its own task, so
    what travels through the Execution API per task stays small whatever the plan's size (a
    1,024-task plan as full dicts was about 3 MB per pull). The plan header (key ``plan``) names the
    file. The previous run's file is deleted when the next plan is made. The table's status becomes
    PLANNING, then ``*_OPTIMIZING``.

    Args:
        table: ``namespace.table`` (templated).
        amoro_conn_id: catalog connection id (templated).
        kind: None (the evaluated kind) or ``minor``/``major``/``full`` to force one.
        max_input_bytes: input cap of the optimizer group (None: no cap).
        max_tasks: at most this many tasks; default Airflow's ``[core] max_map_length`` (a mapped
            execute task cannot expand to more). Files left out are planned by the next run.
        property_overrides: ``self-optimizing.*`` properties overriding the table's own.
        **kwargs: ``BaseOperator`` arguments.
    """

    custom_operator_name = "PlanOptimizingOperator"
    ui_color = "#cfe8f3"

    def __init__(
        self,
        *,
        kind: str | None = None,
        max_input_bytes: int | None = None,
        max_tasks: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        parsed = OptimizingKind.parse(kind)
        self.kind = None if parsed is None else parsed.value
        self.max_input_bytes = max_input_bytes
        self.max_tasks = max_tasks

    def _max_tasks(self) -> int:
        if self.max_tasks is not None:
            return self.max_tasks
        from airflow.sdk.configuration import conf

        return int(conf.getint("core", "max_map_length", fallback=1024))

    def execute(self, context: Any) -> list[dict[str, Any]]:
        """Plan, push the plan header, record the process, return the tasks."""
        from airflow_provider_amoro.optimizing.process import OptimizingProcess

        state = self.state(context)
        state.set_status(TableStatus.PLANNING, self.kind)
        table = self.load_table()
        # in a DAG without a resolve task (generated DAGs have one: then this is a no-op), the
        # last process is settled here, before its record is replaced by the new plan's
        resolve_previous_process(state, table, self.log, own_process_id=self.run_process_id(context))
        self._check_min_plan_interval(table, state)
        process = OptimizingProcess.start(table, self.kind, progress=self.log.info)
        process.evaluate(table, config=self.optimizing_config(table), **state.last_times())
        planned = process.plan(max_input_bytes=self.max_input_bytes, max_tasks=self._max_tasks())
        ti = context["ti"]
        header = planned.to_dict()
        header["tasks"] = []
        refs: list[dict[str, Any]] = []
        if planned.tasks:
            location = plan_tasks_location(table, ti.dag_id, ti.run_id)
            refs = write_plan_tasks(table, location, [t.to_dict() for t in planned.tasks])
            header[TASKS_LOCATION_KEY] = location
        ti.xcom_push(key=PLAN_XCOM_KEY, value=header)
        ti.xcom_push(
            key=PLAN_PROPERTIES_XCOM_KEY,
            value={
                "properties": header.get("properties") or {},
                TASKS_LOCATION_KEY: header.get(TASKS_LOCATION_KEY),
            },
        )
        self._forget_previous_plan(table, state, ti)
        proc = _process(**self.process_args(context, planned, one_task=False, table=table))
        state.record_process(proc)
        if planned.tasks:
            state.set_status(TableStatus.optimizing(planned.kind), planned.kind)
        else:
            state.set_status(TableStatus.IDLE)
        self.log.info(
            "%s: %s plan on snapshot %s: %d task(s), %d input bytes",
            self.table,
            planned.kind,
            planned.base_snapshot_id,
            len(planned.tasks),
            proc.input_bytes,
        )
        return refs

    def _check_min_plan_interval(self, table: Table, state: TableStateRecorder) -> None:
        """Skip when the last plan of the table is younger than ``self-optimizing.min-plan-interval``."""
        from airflow.sdk.exceptions import AirflowSkipException

        interval = self.optimizing_config(table).min_plan_interval_ms
        previous = state.current_process(live=False)
        if interval <= 0 or previous is None or not previous.plan_time_ms:
            return
        age = now_ms() - int(previous.plan_time_ms)
        if age < interval:
            state.set_status(TableStatus.PENDING, self.kind)
            raise AirflowSkipException(
                f"the last plan of {self.table} is {age / 1000:.0f} s old; "
                f"self-optimizing.min-plan-interval is {interval / 1000:.0f} s"
            )

    def _forget_previous_plan(self, table: Table, state: TableStateRecorder, ti: Any) -> None:
        """Delete the task file of the previous process's plan (it is over: ``resolve`` ran first)."""
        try:
            previous = state.current_process(live=False)
            if previous is None or not previous.dag_id or not previous.run_id:
                return
            if (previous.dag_id, previous.run_id) == (ti.dag_id, ti.run_id):
                return
            old = plan_tasks_location(table, previous.dag_id, previous.run_id)
            table.io.delete(old)
            self.log.info("deleted the task file of the previous plan: %s", old)
        except Exception as exc:  # noqa: BLE001 - absent file or no state: nothing to clean
            self.log.info("no task file of a previous plan deleted: %s", exc)


class ExecuteOptimizingTaskOperator(_OptimizingOperator):
    """Executes one rewrite task (a worker is an optimizer); returns the ``TaskResult`` dict.

    The output file size and the other settings come from the properties the plan was made with
    (the plan header in XCom of ``plan_task_id``), so all tasks of a process agree with their plan.

    Args:
        task: one ``RewriteTask`` dict, or a reference ``{"ref": [offset, length]}`` into the plan's
            stored task list (what ``PlanOptimizingOperator`` returns).
        table: ``namespace.table`` (templated).
        amoro_conn_id: catalog connection id (templated).
        plan_task_id: task id of the plan task (its ``plan`` XCom holds the planned properties).
        property_overrides: ``self-optimizing.*`` properties overriding the table's own.
        **kwargs: ``BaseOperator`` arguments (``retries``: see :func:`retries_for`).
    """

    custom_operator_name = "ExecuteOptimizingTaskOperator"
    ui_color = "#a9d4ea"

    def __init__(self, *, task: Mapping[str, Any], plan_task_id: str = "plan", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rewrite_task = dict(task)
        self.plan_task_id = plan_task_id

    def _header(self, context: Any) -> dict[str, Any]:
        """What this task needs of its plan: planned properties and task file (small, fixed size)."""
        ti = context.get("ti")
        try:
            header = None
            if ti is not None:
                header = ti.xcom_pull(task_ids=self.plan_task_id, key=PLAN_PROPERTIES_XCOM_KEY)
                if not isinstance(header, dict):  # a plan made before this key existed
                    header = ti.xcom_pull(task_ids=self.plan_task_id, key=PLAN_XCOM_KEY)
        except Exception as exc:  # noqa: BLE001 - used without a plan task: the table's properties
            self.log.info("no plan header from %r: %s", self.plan_task_id, exc)
            return {}
        return header if isinstance(header, dict) else {}

    def _planned_properties(self, context: Any) -> dict[str, str]:
        props = self._header(context).get("properties")
        return {str(k): str(v) for k, v in props.items()} if isinstance(props, dict) else {}

    def _task(self, table: Table, header: Mapping[str, Any]) -> dict[str, Any]:
        """The rewrite task: given whole, or read by its reference from the stored plan."""
        ref = self.rewrite_task.get("ref")
        if ref is None:
            return self.rewrite_task
        location = header.get(TASKS_LOCATION_KEY)
        if not location:
            raise ValueError(
                f"task reference {ref} but the plan header of {self.plan_task_id!r} names no file"
            )
        return read_plan_task(table, str(location), ref)

    def execute(self, context: Any) -> dict[str, Any]:
        """Rewrite the task's files; nothing is committed here."""
        from airflow_provider_amoro.optimizing import RewriteTask
        from airflow_provider_amoro.optimizing.process import OptimizingProcess

        table = self.load_table()
        header = self._header(context)
        task = RewriteTask.from_dict(self._task(table, header))
        state = self.state(context)
        state.set_status(TableStatus.optimizing(task.kind), task.kind)
        props = header.get("properties")
        planned_props = {str(k): str(v) for k, v in props.items()} if isinstance(props, dict) else {}
        process = OptimizingProcess.start(table, task.kind)
        result = process.execute(table, task, config=self.optimizing_config(table, planned_props))
        self.log.info(
            "%s task %d (%s): %d files / %d bytes in, %d files / %d records out in %.2fs",
            self.table,
            task.task_id,
            task.partition_path or "unpartitioned",
            result.input_files,
            result.input_bytes,
            len(result.outputs),
            result.output_records,
            result.duration_s,
        )
        out: dict[str, Any] = result.to_dict()
        return out


class CommitOptimizingOperator(_OptimizingOperator):
    """Commits the results of the mapped execute tasks as one REPLACE snapshot.

    Pulls the plan (``plan_task_id``) and every mapped result (``execute_task_id``), commits,
    emits the table asset's event (``extra["producer"] = "amoro-optimizer"``) and records the
    last optimized snapshot, the last minor/major/full time and the process in the history.
    Runs with ``trigger_rule="all_done"`` by default (see the module docs).

    Args:
        plan_task_id: task id of the ``PlanOptimizingOperator``.
        execute_task_id: task id of the mapped ``ExecuteOptimizingTaskOperator``.
        table: ``namespace.table`` (templated).
        amoro_conn_id: catalog connection id (templated).
        **kwargs: ``BaseOperator`` arguments.
    """

    custom_operator_name = "CommitOptimizingOperator"
    changes_table = True
    ui_color = "#7fbfdf"

    def __init__(
        self, *, plan_task_id: str = "plan", execute_task_id: str = "execute", **kwargs: Any
    ) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.plan_task_id = plan_task_id
        self.execute_task_id = execute_task_id

    def _pull(self, context: Any) -> tuple[OptimizingPlan | None, list[TaskResult]]:
        from airflow_provider_amoro.optimizing import OptimizingPlan, TaskResult

        ti = context["ti"]
        header = ti.xcom_pull(task_ids=self.plan_task_id, key=PLAN_XCOM_KEY)
        if not isinstance(header, dict):
            return None, []
        tasks = ti.xcom_pull(task_ids=self.plan_task_id, key="return_value") or []
        location = header.get(TASKS_LOCATION_KEY)
        if location and any(isinstance(t, dict) and "ref" in t for t in tasks):
            tasks = read_plan_tasks(self.load_table(), str(location))
        planned = OptimizingPlan.from_dict({**header, "tasks": list(tasks)})
        raw = ti.xcom_pull(task_ids=self.execute_task_id, key="return_value")
        if isinstance(raw, dict):
            raw = [raw]
        results = [TaskResult.from_dict(r) for r in (raw or []) if isinstance(r, dict)]
        return planned, results

    def execute(self, context: Any) -> dict[str, Any]:
        """Commit (or find the already landed commit), record state, emit the asset event."""
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_provider_amoro.optimizing.process import OptimizingProcess

        planned, results = self._pull(context)
        state = self.state(context)
        if planned is None or not planned.tasks:
            current = state.current_process(live=False)
            ti = context.get("ti")
            if (
                current is not None
                and current.status == ProcessStatus.RUNNING.value
                and (
                    current.dag_id,
                    current.run_id,
                )
                == (getattr(ti, "dag_id", None), getattr(ti, "run_id", None))
            ):
                current.status = ProcessStatus.CLOSED.value
                current.end_time_ms = now_ms()
                state.record_process(current)
            raise AirflowSkipException("no plan or an empty plan: nothing to commit")
        state.set_status(TableStatus.COMMITTING, planned.kind)
        table = self.load_table()
        common = {**self.process_args(context, planned, one_task=False, table=table), "results": results}
        missing = sorted({t.task_id for t in planned.tasks} - {r.task_id for r in results})
        try:
            # idempotent: a retried or cleared commit returns the landed commit (already_committed)
            committed: CommitResult = OptimizingProcess.of_plan(
                planned, results, progress=self.log.info
            ).commit(table)
        except BaseException as exc:
            what = f"optimizing commit of {self.table}" + (
                f" (tasks without results {missing})" if missing else ""
            )
            error = _commit_failed(state, common, exc, what, self.log)
            if error is None:
                raise
            raise error from exc
        if committed.already_committed:
            self.log.info(
                "plan %s was already committed as snapshot %s", planned.plan_id, committed.snapshot_id
            )
        snapshot_id = committed.snapshot_id
        proc = _process(**common, status=ProcessStatus.SUCCESS, snapshot_id=snapshot_id)
        if committed.snapshot_id is None and not committed.already_committed:
            proc.status = ProcessStatus.CLOSED.value
        _record_success(state, proc)
        metrics = _metrics(proc, committed)
        self.emit_table_event(
            context,
            operation=f"{planned.kind}_optimizing",
            metrics=metrics,
            snapshot_id=snapshot_id,
            changed=snapshot_id is not None,
        )
        return metrics


# ---- one-task operators ---------------------------------------------------------------------------


class SelfOptimizingOperator(_OptimizingOperator):
    """The whole optimizing process in one task; returns a small metrics dict.

    Evaluates, plans (the evaluated kind, or the forced ``kind``), executes every task in this
    worker, commits one REPLACE snapshot, emits the table asset's event and records the runtime
    state. Does nothing (``kind`` None in the metrics) when no optimizing is needed and ``kind`` is
    ``"auto"``.

    Args:
        table: ``namespace.table`` (templated).
        amoro_conn_id: catalog connection id (templated).
        kind: ``"auto"`` (default) or ``minor``/``major``/``full`` to force one.
        max_input_bytes: input cap (None: no cap).
        property_overrides: ``self-optimizing.*`` properties overriding the table's own.
        **kwargs: ``BaseOperator`` arguments.
    """

    custom_operator_name = "SelfOptimizingOperator"
    changes_table = True
    ui_color = "#5aa9d6"
    default_kind: str = "auto"

    def __init__(self, *, kind: str | None = None, max_input_bytes: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parsed = OptimizingKind.parse(kind or self.default_kind, allow_auto=True)
        self.kind = "auto" if parsed is None else parsed.value
        self.max_input_bytes = max_input_bytes

    def execute(self, context: Any) -> dict[str, Any]:
        """Run one optimizing process: the engine's :class:`OptimizingProcess`, every step here."""
        from airflow_provider_amoro.optimizing import evaluate
        from airflow_provider_amoro.optimizing.process import OptimizingProcess

        started = time.monotonic()
        state = self.state(context)
        table = self.load_table()
        resolve_previous_process(state, table, self.log, own_process_id=self.one_task_process_id(context))
        times = state.last_times()
        config = self.optimizing_config(table)
        process = OptimizingProcess.start(table, self.kind, progress=self.log.info)
        before = process.evaluate(table, config=config, **times)
        summary = evaluation_summary(before.to_dict())
        summary["evaluated_ms"] = now_ms()
        state.record_evaluation(summary)
        if not process.has_work:
            state.set_status(TableStatus.IDLE)
            self.emit_table_event(context, operation="optimizing", metrics={"kind": None}, changed=False)
            return {"kind": None, "health_before": before.health_score, "reasons": before.reasons}
        state.set_status(TableStatus.PLANNING, process.kind)
        planned = process.plan(max_input_bytes=self.max_input_bytes)
        if not planned.tasks:
            state.set_status(TableStatus.IDLE)
            self.emit_table_event(
                context, operation="optimizing", metrics={"kind": planned.kind}, changed=False
            )
            return {"kind": planned.kind, "tasks": 0, "health_before": before.health_score}
        common = {
            **self.process_args(context, planned, one_task=True, table=table),
            "summary": {"health_before": before.health_score, "reasons": before.reasons[:20]},
        }
        state.record_process(_process(**common))
        state.set_status(TableStatus.optimizing(planned.kind), planned.kind)
        self._execute_all(process, table, config, state, common)
        state.set_status(TableStatus.COMMITTING, planned.kind)
        try:
            committed = process.commit(table)
        except BaseException as exc:
            results = {**common, "results": process.results}
            error = _commit_failed(state, results, exc, f"optimizing of {self.table}", self.log)
            if error is None:
                raise
            raise error from exc
        proc = _process(
            **common, results=process.results, status=ProcessStatus.SUCCESS, snapshot_id=committed.snapshot_id
        )
        after = evaluate(table, config=config, **{**times, f"last_{planned.kind}_ms": now_ms()})
        process.health_after = proc.summary["health_after"] = after.health_score
        _record_success(state, proc)
        metrics = _metrics(proc, committed)
        metrics.update(
            health_before=before.health_score,
            health_after=after.health_score,
            duration_s=round(time.monotonic() - started, 3),
        )
        self.emit_table_event(
            context,
            operation=f"{planned.kind}_optimizing",
            metrics=metrics,
            snapshot_id=committed.snapshot_id,
            changed=committed.snapshot_id is not None,
        )
        return metrics

    def _execute_all(
        self,
        process: OptimizingProcess,
        table: Table,
        config: OptimizingConfig,
        state: TableStateRecorder,
        common: Mapping[str, Any],
    ) -> None:
        """Execute every task in this worker; on failure record the process and clean up."""
        from airflow.sdk.exceptions import AirflowFailException

        planned = process.planned
        assert planned is not None
        try:
            for task in process.pending_tasks():
                process.execute(table, task, config=config)
        except Exception as exc:
            # nothing was committed: the outputs written so far go (reference-checked)
            process.discard_outputs(table, min_sequence_number=planned.base_sequence_number)
            failure = f"{type(exc).__name__}: {exc}"
            _record_failure(
                state,
                _process(**common, results=process.results, status=ProcessStatus.FAILED, failure=failure),
            )
            raise AirflowFailException(f"optimizing of {self.table} failed: {failure}") from exc
        except BaseException as exc:
            # a task timeout or a stop: outputs (even unreported ones) are torn down by the next run
            _record_failure(
                state,
                _process(**common, results=process.results, status=ProcessStatus.UNKNOWN, failure=repr(exc)),
            )
            raise


class MinorOptimizingOperator(SelfOptimizingOperator):
    """Minor optimizing in one task (fragments and equality deletes); see :class:`SelfOptimizingOperator`."""

    custom_operator_name = "MinorOptimizingOperator"
    default_kind = "minor"


class MajorOptimizingOperator(SelfOptimizingOperator):
    """Major optimizing in one task (undersized segments, duplicates); see :class:`SelfOptimizingOperator`."""

    custom_operator_name = "MajorOptimizingOperator"
    default_kind = "major"


class FullOptimizingOperator(SelfOptimizingOperator):
    """Full optimizing in one task (every file, sorted by sort order); see :class:`SelfOptimizingOperator`."""

    custom_operator_name = "FullOptimizingOperator"
    default_kind = "full"
