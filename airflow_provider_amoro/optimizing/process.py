"""The optimizing process: one object that every driver runs, step by step.

An :class:`OptimizingProcess` goes through **evaluate -> plan -> execute(task) -> commit**. Between
steps it is plain JSON (:meth:`OptimizingProcess.to_dict` / :meth:`OptimizingProcess.from_dict`),
the same JSON that travels through XCom and the plan store, so each step may run in another
process or on another host. Three drivers run it:

- :func:`airflow_provider_amoro.optimizing.optimize` runs every step in one call (no Airflow);
- ``SelfOptimizingOperator`` runs every step in one Airflow task and records the runtime state;
- the split ``Plan``/``Execute``/``Commit`` operators of a generated DAG run one step each (the
  mapped execute tasks each receive only their own rewrite task).

Progress messages go to the ``progress`` callback (a logger's ``info``, Airflow's task log, ...).

::

    process = OptimizingProcess.start(table, kind=None, progress=print)
    process.evaluate(table)
    process.plan()
    for task in process.pending_tasks():
        process.execute(table, task)
    process.commit(table)
    process.to_dict()          # counters, the plan, the results, the committed snapshot
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_amoro.optimizing.commit import CommitResult, commit, delete_task_outputs
from airflow_provider_amoro.optimizing.config import OptimizingConfig
from airflow_provider_amoro.optimizing.evaluate import TableEvaluation, evaluate
from airflow_provider_amoro.optimizing.execute import execute
from airflow_provider_amoro.optimizing.model import IOCounters, OptimizingPlan, RewriteTask, TaskResult
from airflow_provider_amoro.optimizing.plan import plan_evaluation
from airflow_provider_amoro.properties import OptimizingKind

if TYPE_CHECKING:
    from pyiceberg.table import Table

logger = logging.getLogger(__name__)

#: Where progress messages go: a callable taking one message.
ProgressCallback = Callable[[str], Any]

#: At most this many evaluation reasons are kept in the process's JSON.
REASONS_KEPT = 20


def table_name(table: Table) -> str:
    """``namespace.table`` of a pyiceberg table."""
    ident: Any = table.name()
    return ".".join(ident) if isinstance(ident, tuple) else str(ident)


@dataclass
class OptimizingProcess:
    """One optimizing process of one table, serialisable between its steps.

    Attributes:
        table: ``namespace.table``.
        requested_kind: the kind forced by the caller; None: the kind the evaluation asks for.
        evaluated_kind: the kind the evaluation asked for (None: nothing to do).
        health_before: health score (0-100) at evaluation.
        health_after: health score after the commit (set by a driver that re-evaluates).
        reasons: why the evaluated kind was chosen (at most :data:`REASONS_KEPT`).
        planned: the plan (None before :meth:`plan`).
        results: results of the executed tasks, in the order they finished.
        commit_result: the commit's metrics (None before :meth:`commit`).
        progress: progress callback (not serialised).
        evaluation: the full evaluation of :meth:`evaluate` (not serialised; :meth:`plan` needs it
            in the same process).
    """

    table: str
    requested_kind: OptimizingKind | None = None
    evaluated_kind: OptimizingKind | None = None
    health_before: int | None = None
    health_after: int | None = None
    reasons: list[str] = field(default_factory=list)
    planned: OptimizingPlan | None = None
    results: list[TaskResult] = field(default_factory=list)
    commit_result: CommitResult | None = None
    progress: ProgressCallback | None = field(default=None, repr=False, compare=False)
    evaluation: TableEvaluation | None = field(default=None, repr=False, compare=False)

    @classmethod
    def start(
        cls,
        table: Table | str,
        kind: OptimizingKind | str | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> OptimizingProcess:
        """A new process; ``kind`` ``None``/``"auto"`` lets the evaluation decide.

        Raises:
            ValueError: an unknown kind (naming it and the accepted kinds).
        """
        name = table if isinstance(table, str) else table_name(table)
        return cls(table=name, requested_kind=OptimizingKind.parse(kind, allow_auto=True), progress=progress)

    # ---- what the process is ------------------------------------------------------------------

    @property
    def process_id(self) -> str | None:
        """The plan id: the process's identity in the table (snapshot summary, output file names)."""
        return None if self.planned is None else self.planned.plan_id

    @property
    def kind(self) -> OptimizingKind | None:
        """The kind that runs: the plan's once planned, else the requested or evaluated one."""
        if self.planned is not None:
            return self.planned.kind
        return self.requested_kind or self.evaluated_kind

    @property
    def base_snapshot_id(self) -> int | None:
        """The snapshot the plan was made on."""
        return None if self.planned is None else self.planned.base_snapshot_id

    @property
    def committed_snapshot_id(self) -> int | None:
        """The REPLACE snapshot the commit produced (or found already landed)."""
        return None if self.commit_result is None else self.commit_result.snapshot_id

    @property
    def has_work(self) -> bool:
        """Whether there is something to plan (after :meth:`evaluate`) or to execute (after :meth:`plan`)."""
        if self.planned is not None:
            return bool(self.planned.tasks)
        return self.kind is not None

    def counters(self) -> IOCounters:
        """The process's I/O totals: of the executed tasks, else (before any ran) the planned inputs."""
        if self.results:
            return IOCounters.of_results(self.results)
        tasks = [] if self.planned is None else self.planned.tasks
        return IOCounters.total(IOCounters.planned(t) for t in tasks)

    def pending_tasks(self) -> list[RewriteTask]:
        """Planned tasks without a result yet."""
        done = {r.task_id for r in self.results}
        return [t for t in (self.planned.tasks if self.planned else []) if t.task_id not in done]

    def say(self, message: str) -> None:
        """Report progress (to the callback, else this module's logger)."""
        (self.progress or logger.info)(f"{self.table}: {message}")

    # ---- the steps ----------------------------------------------------------------------------

    def evaluate(
        self,
        table: Table,
        *,
        config: OptimizingConfig | None = None,
        now: int | None = None,
        last_minor_ms: int | None = None,
        last_major_ms: int | None = None,
        last_full_ms: int | None = None,
    ) -> TableEvaluation:
        """Step 1: evaluate the table (file classes, health, the kind it needs)."""
        ev = evaluate(
            table,
            now=now,
            last_minor_ms=last_minor_ms,
            last_major_ms=last_major_ms,
            last_full_ms=last_full_ms,
            config=config,
        )
        self.evaluation = ev
        self.evaluated_kind = ev.kind
        self.health_before = ev.health_score
        self.reasons = list(ev.reasons[:REASONS_KEPT])
        self.say(f"health {ev.health_score}, evaluated kind {ev.kind}, running {self.kind}")
        return ev

    def plan(
        self, *, max_input_bytes: int | None = None, max_tasks: int | None = None, now: int | None = None
    ) -> OptimizingPlan:
        """Step 2: bin-pack the evaluated partitions into rewrite tasks (an empty plan: nothing to do).

        Raises:
            RuntimeError: :meth:`evaluate` did not run in this process.
        """
        if self.evaluation is None:
            raise RuntimeError(f"{self.table}: plan() needs evaluate() first, in the same process")
        planned = plan_evaluation(
            self.evaluation,
            self.requested_kind,
            table_name=self.table,
            max_input_bytes=max_input_bytes,
            now_ms=now,
            max_tasks=max_tasks,
        )
        self.planned = planned
        if planned.tasks:
            self.say(
                f"{planned.kind} plan on snapshot {planned.base_snapshot_id}: {len(planned.tasks)} tasks"
            )
        else:
            self.say(f"{self.kind} optimizing planned no task")
        return planned

    def execute(
        self, table: Table, task: RewriteTask, *, config: OptimizingConfig | None = None
    ) -> TaskResult:
        """Step 3, once per task (any worker): rewrite the task's files; nothing is committed."""
        result = execute(table, task, config=config)
        self.record_result(result)
        return result

    def record_result(self, result: TaskResult) -> None:
        """Add a task result (from :meth:`execute` here, or from a worker's XCom) and report it."""
        self.results.append(result)
        total = len(self.planned.tasks) if self.planned is not None else len(self.results)
        self.say(
            f"task {result.task_id} done ({len(self.results)}/{total}): {result.input_files} files in, "
            f"{len(result.outputs)} out, {result.output_records} records, {result.duration_s:.2f}s"
        )

    def commit(self, table: Table) -> CommitResult:
        """Step 4: commit the results as one REPLACE snapshot (idempotent: a landed plan is found).

        Raises:
            RuntimeError: no plan.
            airflow_provider_amoro.optimizing.commit.CommitValidationError: a concurrent commit
                conflicts; nothing was committed.
        """
        if self.planned is None:
            raise RuntimeError(f"{self.table}: commit() needs a plan")
        committed = commit(table, self.planned, self.results)
        self.commit_result = committed
        self.say(
            f"committed snapshot {committed.snapshot_id}: -{committed.removed_data_files}"
            f"/+{committed.added_data_files} data files, -{committed.removed_delete_files}"
            f"/+{committed.added_delete_files} delete files"
        )
        return committed

    def discard_outputs(self, table: Table, *, min_sequence_number: int | None = None) -> None:
        """After a failure before the commit: delete the outputs nothing references (never raises)."""
        delete_task_outputs(table, self.results, min_sequence_number=min_sequence_number)

    # ---- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: what the process is between steps (with its I/O totals, for readers)."""
        return {
            "table": self.table,
            "process_id": self.process_id,
            "kind": None if self.kind is None else self.kind.value,
            "requested_kind": None if self.requested_kind is None else self.requested_kind.value,
            "evaluated_kind": None if self.evaluated_kind is None else self.evaluated_kind.value,
            "health_before": self.health_before,
            "health_after": self.health_after,
            "reasons": list(self.reasons),
            "base_snapshot_id": self.base_snapshot_id,
            "committed_snapshot_id": self.committed_snapshot_id,
            "counters": self.counters().counters_dict(),
            "plan": None if self.planned is None else self.planned.to_dict(),
            "results": [r.to_dict() for r in self.results],
            "commit": None if self.commit_result is None else asdict(self.commit_result),
        }

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, progress: ProgressCallback | None = None) -> OptimizingProcess:
        """Inverse of :meth:`to_dict` (derived fields are recomputed, not read)."""
        raw_commit = d.get("commit")
        return cls(
            table=str(d["table"]),
            requested_kind=OptimizingKind.parse(d.get("requested_kind")),
            evaluated_kind=OptimizingKind.parse(d.get("evaluated_kind")),
            health_before=d.get("health_before"),
            health_after=d.get("health_after"),
            reasons=[str(r) for r in d.get("reasons") or []],
            planned=None if d.get("plan") is None else OptimizingPlan.from_dict(d["plan"]),
            results=[TaskResult.from_dict(r) for r in d.get("results") or []],
            commit_result=None if raw_commit is None else CommitResult(**raw_commit),
            progress=progress,
        )

    @classmethod
    def from_json(cls, s: str, *, progress: ProgressCallback | None = None) -> OptimizingProcess:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(s), progress=progress)

    @classmethod
    def of_plan(
        cls,
        plan: OptimizingPlan,
        results: Iterable[TaskResult] = (),
        *,
        progress: ProgressCallback | None = None,
    ) -> OptimizingProcess:
        """The process of a plan made elsewhere (the plan task's XCom) with its workers' results."""
        return cls(table=plan.table, planned=plan, results=list(results), progress=progress)
