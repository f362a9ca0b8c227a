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
from typing import TYPE_CHECKING, Any

from airflow_provider_amoro.optimizing.commit import CommitResult
from airflow_provider_amoro.optimizing.config import OptimizingConfig
from airflow_provider_amoro.optimizing.evaluate import evaluate
from airflow_provider_amoro.optimizing.execute import execute
from airflow_provider_amoro.optimizing.model import IOCounters, TaskResult
from airflow_provider_amoro.optimizing.process import OptimizingProcess

if TYPE_CHECKING:
    from pyiceberg.table import Table

logger = logging.getLogger(__name__)


@dataclass
class OptimizeResult(IOCounters):
    """Metrics of one :func:`optimize` call.

    Attributes:
        table: table identifier.
        kind: the optimizing kind run, or None when nothing was needed.
        tasks: rewrite tasks executed.
        input_files, input_bytes, input_records, output_files, output_bytes, output_records: the
            process's I/O totals (:class:`IOCounters`).
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


def _run_tasks(table: Table, process: OptimizingProcess, config: OptimizingConfig, max_workers: int) -> None:
    """Execute every task of the process's plan (in a thread pool when ``max_workers > 1``).

    If a task fails, the other tasks' outputs are deleted and the error is raised.
    """
    tasks = process.pending_tasks()
    try:
        if max_workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                process.execute(table, task, config=config)
            return
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="amoro-execute") as pool:
            futures: list[Future[TaskResult]] = [pool.submit(execute, table, t, config=config) for t in tasks]
            finished, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in finished if f.exception() is not None]
            if failed:
                for f in pending:
                    f.cancel()
                wait(pending)
                process.results.extend(
                    f.result() for f in futures if not f.cancelled() and f.exception() is None
                )
                raise failed[0].exception()  # type: ignore[misc]
            for f in futures:
                process.record_result(f.result())
    except BaseException:
        process.discard_outputs(table)
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
        airflow_provider_amoro.optimizing.commit.CommitValidationError: a concurrent commit conflicts;
            nothing was committed and the outputs were deleted (run again).
        airflow_provider_amoro.optimizing.read.InputFileError: a missing or corrupt input file.
    """
    process = OptimizingProcess.start(table, kind, progress=_logger(log))
    started = time.monotonic()
    table.refresh()
    config = OptimizingConfig.from_table(table)
    times = {"now": now, "last_minor_ms": last_minor_ms, "last_major_ms": last_major_ms}
    before = process.evaluate(table, last_full_ms=last_full_ms, config=config, **times)
    result = OptimizeResult(
        table=process.table, kind=None, health_before=before.health_score, reasons=before.reasons
    )
    result.health_after = before.health_score
    if process.has_work and process.plan(now=now).tasks:
        executing = time.monotonic()
        _run_tasks(table, process, config, max_workers)
        result.execute_s = time.monotonic() - executing
        result.commit = process.commit(table)
        result.health_after = evaluate(table, last_full_ms=last_full_ms, config=config, **times).health_score
        result.kind = process.kind
        result.tasks = len(process.results)
        result.set_counters(process.counters())
        result.snapshot_id = process.committed_snapshot_id
    result.duration_s = time.monotonic() - started
    if result.kind is not None:
        process.say(f"health {result.health_before} -> {result.health_after} in {result.duration_s:.2f}s")
    return result
