"""One optimizing process in one call, without Airflow: evaluate -> plan -> execute -> commit.

:func:`optimize` is what a per-table DAG run does, in-process: the same engine functions, so the
table ends in the same state. It is the entry point for scripts, notebooks and tests::

    from airflow_provider_amoro.optimizing import optimize

    result = optimize(table)             # the kind the table needs, or nothing
    result = optimize(table, "full")     # force a full optimizing

Tasks run in a thread pool when ``max_workers > 1`` (pyarrow releases the GIL while reading and
writing Parquet). If any task fails, the other tasks' outputs are deleted and the error is raised;
nothing is committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

from airflow_provider_amoro.optimizing.commit import CommitResult, commit, delete_task_outputs, task_totals
from airflow_provider_amoro.optimizing.config import OptimizingConfig
from airflow_provider_amoro.optimizing.evaluate import TableEvaluation, evaluate
from airflow_provider_amoro.optimizing.execute import execute
from airflow_provider_amoro.optimizing.model import OptimizingKind, OptimizingPlan, TaskResult
from airflow_provider_amoro.optimizing.plan import plan_evaluation

if TYPE_CHECKING:
    from pyiceberg.table import Table

logger = logging.getLogger(__name__)

KINDS = ("minor", "major", "full")


@dataclass
class OptimizeResult:
    """Metrics of one :func:`optimize` call.

    Attributes:
        table: table identifier.
        kind: the optimizing kind run, or None when nothing was needed.
        tasks: rewrite tasks executed.
        input_files: files read (data and delete files).
        input_bytes: bytes of those files.
        input_records: live records read.
        output_files: files written (data and rewrite-pos delete files).
        output_bytes: bytes written.
        output_records: records written to data files.
        snapshot_id: the REPLACE snapshot committed (None when nothing was committed).
        duration_s: wall time of the whole call.
        execute_s: wall time of executing the tasks (reading, rewriting, writing files); the rest
            of ``duration_s`` is the process's fixed cost (metadata reads, planning, the commit).
        health_before: health score before (0-100).
        health_after: health score after.
        reasons: why the kind was chosen (from the evaluation).
        commit: the commit's metrics, or None.
    """

    table: str
    kind: str | None
    tasks: int = 0
    input_files: int = 0
    input_bytes: int = 0
    input_records: int = 0
    output_files: int = 0
    output_bytes: int = 0
    output_records: int = 0
    snapshot_id: int | None = None
    duration_s: float = 0.0
    execute_s: float = 0.0
    health_before: int | None = None
    health_after: int | None = None
    reasons: list[str] = field(default_factory=list)
    commit: CommitResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


Log = Callable[[str], Any] | logging.Logger | None


def _logger(log: Log) -> Callable[[str], Any]:
    if log is None:
        return logger.info
    if isinstance(log, logging.Logger):
        return log.info
    return log


def _run_tasks(
    table: Table, plan: OptimizingPlan, config: OptimizingConfig, max_workers: int, say: Callable[[str], Any]
) -> list[TaskResult]:
    results: list[TaskResult] = []
    total = len(plan.tasks)

    def done(result: TaskResult) -> None:
        results.append(result)
        say(
            f"task {result.task_id} done ({len(results)}/{total}): {result.input_files} files in, "
            f"{len(result.outputs)} out, {result.output_records} records, {result.duration_s:.2f}s"
        )

    try:
        if max_workers <= 1 or total <= 1:
            for task in plan.tasks:
                done(execute(table, task, config=config))
            return results
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="amoro-execute") as pool:
            futures: list[Future[TaskResult]] = [
                pool.submit(execute, table, task, config=config) for task in plan.tasks
            ]
            finished, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in finished if f.exception() is not None]
            if failed:
                for f in pending:
                    f.cancel()
                wait(pending)
                for f in futures:
                    if not f.cancelled() and f.exception() is None:
                        results.append(f.result())
                raise failed[0].exception()  # type: ignore[misc]
            for f in futures:
                done(f.result())
        return results
    except BaseException:
        delete_task_outputs(table, results)
        raise


def optimize(
    table: Table,
    kind: str | None = "auto",
    *,
    now: int | None = None,
    last_minor_ms: int | None = None,
    last_major_ms: int | None = None,
    last_full_ms: int | None = None,
    max_workers: int = 1,
    log: Log = None,
) -> OptimizeResult:
    """Run one optimizing process on ``table``: evaluate, plan, execute every task, commit.

    Args:
        table: the pyiceberg table (refreshed first; updated to the new metadata on commit).
        kind: ``"auto"`` or None: the kind the evaluation asks for (nothing when none); or force
            ``"minor"``, ``"major"`` or ``"full"``.
        now: the evaluation time, epoch milliseconds (default: the clock).
        last_minor_ms: end of the last minor optimizing (for the minor interval); None: never.
        last_major_ms: end of the last major optimizing; None: never.
        last_full_ms: end of the last full optimizing (for the full interval); None: never.
        max_workers: tasks executed at the same time (threads).
        log: progress messages go here: a ``logging.Logger``, a callable taking a string, or None
            for this module's logger.

    Returns:
        The process metrics; ``kind`` is None and nothing is committed when there is nothing to do.

    Raises:
        ValueError: an unknown ``kind``.
        airflow_provider_amoro.optimizing.commit.ValidationError: a concurrent commit conflicts;
            nothing was committed and the outputs were deleted (run again).
        airflow_provider_amoro.optimizing.read.InputFileError: a missing or corrupt input file.
    """
    if kind not in (None, "auto", *KINDS):
        raise ValueError(f"kind must be 'auto', 'minor', 'major' or 'full', not {kind!r}")
    say = _logger(log)
    started = time.monotonic()
    table.refresh()
    name = ".".join(table.name())
    config = OptimizingConfig.from_table(table)
    times = {"now": now, "last_minor_ms": last_minor_ms, "last_major_ms": last_major_ms}
    before = evaluate(table, last_full_ms=last_full_ms, config=config, **times)
    chosen = before.kind if kind in (None, "auto") else kind
    result = OptimizeResult(table=name, kind=None, health_before=before.health_score, reasons=before.reasons)
    say(f"{name}: health {before.health_score}, evaluated kind {before.kind}, running {chosen}")
    if chosen is None:
        result.health_after = before.health_score
        result.duration_s = time.monotonic() - started
        return result
    plan = _plan(table, before, None if kind in (None, "auto") else chosen, now)
    if not plan.tasks:
        say(f"{name}: {chosen} optimizing planned no task")
        result.health_after = before.health_score
        result.duration_s = time.monotonic() - started
        return result
    say(f"{name}: {plan.kind} plan on snapshot {plan.base_snapshot_id}: {len(plan.tasks)} tasks")
    executing = time.monotonic()
    results = _run_tasks(table, plan, config, max_workers, say)
    result.execute_s = time.monotonic() - executing
    committed = commit(table, plan, results)
    say(
        f"{name}: committed snapshot {committed.snapshot_id}: -{committed.removed_data_files}"
        f"/+{committed.added_data_files} data files, -{committed.removed_delete_files}"
        f"/+{committed.added_delete_files} delete files"
    )
    after = evaluate(table, last_full_ms=last_full_ms, config=config, **times)
    result.kind = plan.kind
    for key, value in task_totals(results).items():
        setattr(result, key, value)
    result.snapshot_id = committed.snapshot_id
    result.commit = committed
    result.health_after = after.health_score
    result.duration_s = time.monotonic() - started
    say(f"{name}: health {before.health_score} -> {after.health_score} in {result.duration_s:.2f}s")
    return result


def _plan(table: Table, evaluation: TableEvaluation, kind: str | None, now: int | None) -> OptimizingPlan:
    forced: OptimizingKind | None = None
    if kind is not None:
        forced = cast("OptimizingKind", kind)
    return plan_evaluation(evaluation, forced, table_name=".".join(table.name()), now_ms=now)
