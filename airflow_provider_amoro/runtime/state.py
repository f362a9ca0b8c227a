"""The runtime state of managed tables: status values, stored record shapes and key names.

This module imports no Airflow. Writers (task code, through the Task SDK) are in
:mod:`airflow_provider_amoro.runtime.recorder`; readers (the UI, in the api-server) in
:mod:`airflow_provider_amoro.runtime.reader`. The storage design is documented in ``docs/runtime.md``.

Every record lives in the **asset state store** of the table's asset (``iceberg://conn/ns/table``),
one key per writer concern, so that tasks which may run at the same time never read-modify-write
the same key:

==========================  ===============================================  ======================
key                         value                                            written by
==========================  ===============================================  ======================
``amoro.status``            last status hint :class:`StatusHint`             every optimizing task
``amoro.evaluation``        last evaluation (pending input, kind, reasons)   evaluate / one-task ops
``amoro.process``           the current (last planned) process, no tasks     plan / one-task ops
``amoro.optimized``         last optimized snapshot, last minor/major/full   commit / one-task ops
``amoro.history``           finished processes, newest first, bounded        commit / one-task ops
``amoro.maintenance.<a>``   last run of maintenance action ``<a>``           maintenance operators
``amoro.failure``           failed optimizing: count, reason, next attempt   failure callbacks
==========================  ===============================================  ======================
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, TypeVar

from airflow_provider_amoro.io_counters import IOCounters

KEY_STATUS = "amoro.status"
KEY_EVALUATION = "amoro.evaluation"
KEY_PROCESS = "amoro.process"
KEY_OPTIMIZED = "amoro.optimized"
KEY_HISTORY = "amoro.history"
KEY_MAINTENANCE_PREFIX = "amoro.maintenance."
KEY_IDENTITY = "amoro.identity"
"""The table the state belongs to: ``{"uuid": <table-uuid>, "name": "ns.table"}``. State is the
table's by its UUID: a re-created table (same name, new UUID) starts fresh, a renamed table (new
name, same UUID) adopts the state recorded under its previous name."""
KEY_FAILURE = "amoro.failure"

STAGE_BY_OPERATOR: dict[str, str] = {
    "EvaluateOptimizingOperator": "evaluate",
    "PlanOptimizingOperator": "plan",
    "ExecuteOptimizingTaskOperator": "execute",
    "CommitOptimizingOperator": "commit",
    "SelfOptimizingOperator": "one_task",
    "MinorOptimizingOperator": "one_task",
    "MajorOptimizingOperator": "one_task",
    "FullOptimizingOperator": "one_task",
}
"""Pipeline stage of each optimizing operator, by the operator name Airflow stores on task instances
(the operators set ``custom_operator_name`` to these names, so subclasses keep their stage)."""

HISTORY_LIMIT = 50
"""Finished processes kept in ``amoro.history`` (older ones remain visible as DAG runs)."""

HISTORY_WITH_TASKS = 3
"""Newest processes of ``amoro.history`` that keep their per-task records (older ones keep totals;
their tasks are rebuilt from the run's task instances and XComs while the run exists)."""

TASKS_PER_PROCESS_LIMIT = 100
"""Per-task records stored with one process (the totals always cover every task)."""

STATE_VALUE_BUDGET = 60_000
"""Bytes of JSON one state value may take (Airflow warns above ``max_value_storage_bytes``, 64 KB)."""


class TableStatus(str, Enum):
    """Amoro's optimizing status of a table."""

    IDLE = "IDLE"
    PENDING = "PENDING"
    PLANNING = "PLANNING"
    MINOR_OPTIMIZING = "MINOR_OPTIMIZING"
    MAJOR_OPTIMIZING = "MAJOR_OPTIMIZING"
    FULL_OPTIMIZING = "FULL_OPTIMIZING"
    COMMITTING = "COMMITTING"

    @classmethod
    def optimizing(cls, kind: str | None) -> TableStatus:
        """The ``*_OPTIMIZING`` status of a process kind (``minor``/``major``/``full``)."""
        return {
            "minor": cls.MINOR_OPTIMIZING,
            "major": cls.MAJOR_OPTIMIZING,
            "full": cls.FULL_OPTIMIZING,
        }.get(str(kind or "").lower(), cls.MINOR_OPTIMIZING)


class ProcessStatus(str, Enum):
    """Status of one optimizing process (Amoro: RUNNING, SUCCESS, FAILED, CLOSED; here also UNKNOWN).

    ``UNKNOWN``: the commit may or may not have landed (``CommitStateUnknownException``, a task
    timeout, an unexpected error during the commit). The outputs are kept; the next run of the
    table's DAG resolves it by the plan id (landed: ``SUCCESS``; not landed: outputs deleted,
    ``FAILED``) before planning anything new.
    """

    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CLOSED = "CLOSED"
    UNKNOWN = "UNKNOWN"


def maintenance_key(action: str) -> str:
    """Asset-state key of a maintenance action's last run (e.g. ``expire_snapshots``)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", action):
        raise ValueError(f"invalid maintenance action name: {action!r}")
    return KEY_MAINTENANCE_PREFIX + action


DAG_ID_MAX_LENGTH = 250
"""Airflow's limit on DAG ids."""

_DAG_ID_BAD_CHARS = re.compile(r"[^\w.-]")


def table_dag_id(conn_id: str, identifier: str) -> str:
    """The id of the generated per-table DAG: ``amoro__<conn>__<namespace>__<table>``.

    Readable, stable and unique for any table name:

    - namespace levels stay joined with ``.``; letters and digits of any script are kept (Airflow
      allows Unicode word characters in DAG ids), as are ``_``, ``.`` and ``-``; every other
      character becomes ``_``;
    - when that replacement changed the name, when a namespace or table name itself holds ``__``
      (``a__b.c`` and ``a.b__c`` would otherwise both read ``a__b__c``) or starts or ends with
      ``_``, or when the id would be
      longer than Airflow's 250 characters, the id is cut to fit and ends with ``__h`` plus ten hex
      digits of a SHA-1 of the connection id and the exact identifier.

    Simple names (``demo.orders``) keep the plain id, so existing DAGs keep their ids. The DAG
    factory and the Lakehouse page name DAGs with this function.
    """
    namespace, _, name = identifier.rpartition(".")
    raw = f"amoro__{conn_id}__{namespace}__{name}"
    clean = _DAG_ID_BAD_CHARS.sub("_", raw)
    ambiguous = any(
        "__" in part or part.startswith("_") or part.endswith("_") for part in (conn_id, namespace, name)
    )
    if clean == raw and not ambiguous and len(clean) <= DAG_ID_MAX_LENGTH:
        return clean
    import hashlib

    digest = hashlib.sha1(f"{conn_id}\x00{identifier}".encode(), usedforsecurity=False).hexdigest()[:10]
    suffix = f"__h{digest}"
    return clean[: DAG_ID_MAX_LENGTH - len(suffix)] + suffix


_R = TypeVar("_R", bound="_Record")


class _Record:
    """JSON round trip of a flat dataclass record (unknown keys are ignored when reading)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_dict(cls: type[_R], d: dict[str, Any]) -> _R:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        fields = getattr(cls, "__dataclass_fields__", {})
        return cls(**{k: v for k, v in d.items() if k in fields})


@dataclass
class StatusHint:
    """The status a task set when it started a stage, and which task instance it was.

    A hint is only trusted while its DAG run is active (see the reader); a dead worker can
    therefore never leave a table stuck in a stale status.
    """

    status: str
    kind: str | None
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    updated_ms: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StatusHint:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        return cls(
            status=str(d.get("status", TableStatus.IDLE.value)),
            kind=d.get("kind"),
            dag_id=str(d.get("dag_id", "")),
            run_id=str(d.get("run_id", "")),
            task_id=str(d.get("task_id", "")),
            map_index=int(d.get("map_index", -1)),
            updated_ms=int(d.get("updated_ms", 0)),
        )


@dataclass
class TaskRecord(_Record, IOCounters):
    """One rewrite task of a process, as the history shows it.

    Attributes:
        task_id: position of the task in its plan.
        partition: human-readable partition path.
        status: ``SUCCESS``, ``FAILED``, ``RUNNING`` or ``PLANNED``.
        attempts: task-instance tries (from Airflow, when known).
        input_files, input_bytes, input_records, output_files, output_bytes, output_records: the
            task's :class:`~airflow_provider_amoro.io_counters.IOCounters`.
        duration_s: execution time of the successful attempt.
        airflow_state: the Airflow task-instance state, when the run is still known.
    """

    task_id: int
    partition: str = ""
    status: str = "PLANNED"
    attempts: int = 0
    duration_s: float = 0.0
    airflow_state: str | None = None

    @property
    def duration_ms(self) -> int:
        """``duration_s`` in milliseconds."""
        return int(self.duration_s * 1000)


@dataclass
class ProcessRecord(IOCounters):
    """One optimizing process (one plan → execute → commit), Amoro's ``table_optimizing_process``.

    Attributes:
        process_id: ``<dag_id>/<run_id>`` (or ``<dag_id>/<run_id>/<task_id>`` for one-task operators).
        table: ``namespace.table``.
        conn_id: catalog connection id.
        kind: ``minor``, ``major`` or ``full``.
        status: a :class:`ProcessStatus` value.
        dag_id, run_id: the Airflow run that ran the process.
        base_snapshot_id: snapshot the plan was made on.
        committed_snapshot_id: snapshot the commit produced (None when nothing was committed).
        plan_time_ms, end_time_ms: epoch milliseconds.
        task_count: tasks in the plan.
        input_files, input_bytes, input_records, output_files, output_bytes, output_records: the
            process's :class:`~airflow_provider_amoro.io_counters.IOCounters` totals.
        failure: failure message (None when not failed).
        summary: further metrics (partitions, health score before, …).
        tasks: per-task records.
        plan_id: the plan's id: written into the committed snapshot's summary
            (``amoro.process-id``) and at the start of every output file name.
        base_sequence_number: sequence number of the base snapshot (bounds the reference check).
        output_folders: where the process's tasks write their outputs, recorded before they write
            (the teardown lists them for files of this process that no snapshot references).
        teardown: what the teardown of the next run did (None until it ran): counts of files
            listed, deleted and kept, and how an ``UNKNOWN`` commit was resolved.
    """

    process_id: str
    table: str
    conn_id: str
    kind: str | None
    status: str
    dag_id: str = ""
    run_id: str = ""
    base_snapshot_id: int | None = None
    committed_snapshot_id: int | None = None
    plan_time_ms: int = 0
    end_time_ms: int | None = None
    task_count: int = 0
    failure: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    tasks: list[TaskRecord] = field(default_factory=list)
    plan_id: str | None = None
    base_sequence_number: int | None = None
    output_folders: list[str] = field(default_factory=list)
    teardown: dict[str, Any] | None = None

    @property
    def duration_ms(self) -> int | None:
        """End minus plan time, when finished."""
        return None if self.end_time_ms is None else max(0, self.end_time_ms - self.plan_time_ms)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``duration_ms`` included)."""
        d = asdict(self)
        d["duration_ms"] = self.duration_ms
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProcessRecord:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        if "target_snapshot_id" in d and "committed_snapshot_id" not in d:  # written before the rename
            d = {**d, "committed_snapshot_id": d["target_snapshot_id"]}
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "tasks"}
        return cls(**known, tasks=[TaskRecord.from_dict(t) for t in d.get("tasks") or []])


@dataclass
class MaintenanceRecord(_Record):
    """Last run of one maintenance action.

    Attributes:
        action: action name (``expire_snapshots``, ``clean_orphan_files``, …).
        time_ms: when it finished, epoch milliseconds.
        success: whether it succeeded.
        result: its metrics dict (or ``{"error": …}``).
        dag_id, run_id, task_id: the task instance that ran it.
    """

    action: str
    time_ms: int
    success: bool = True
    result: dict[str, Any] = field(default_factory=dict)
    dag_id: str = ""
    run_id: str = ""
    task_id: str = ""


@dataclass
class TableRuntime:
    """Everything the UI shows about one managed table.

    Attributes:
        conn_id: catalog connection id.
        table: ``namespace.table``.
        asset_uri: the table's asset URI.
        dag_id: the generated per-table DAG id.
        status: current :class:`TableStatus` value (derived from live task states).
        status_since_ms: when the current status began (best known).
        current_process: the running process, if any.
        last_optimized_snapshot_id: snapshot produced by the last successful commit.
        last_minor_ms, last_major_ms, last_full_ms: last successful commit of each kind.
        pending: the last evaluation (kind, health score, cost, pending input, reasons, time).
        maintenance: last run of each maintenance action, by action name.
        last_process: the most recent finished process, if any.
        failure: the optimizing failures in a row (``count``, ``task_id``, ``reason``,
            ``failed_ms``, ``next_attempt_ms``), None when the last attempt did not fail.
    """

    conn_id: str
    table: str
    asset_uri: str
    dag_id: str
    status: str = TableStatus.IDLE.value
    status_since_ms: int | None = None
    current_process: ProcessRecord | None = None
    last_optimized_snapshot_id: int | None = None
    last_minor_ms: int | None = None
    last_major_ms: int | None = None
    last_full_ms: int | None = None
    pending: dict[str, Any] | None = None
    maintenance: dict[str, MaintenanceRecord] = field(default_factory=dict)
    last_process: ProcessRecord | None = None
    failure: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "conn_id": self.conn_id,
            "table": self.table,
            "asset_uri": self.asset_uri,
            "dag_id": self.dag_id,
            "status": self.status,
            "status_since_ms": self.status_since_ms,
            "current_process": self.current_process.to_dict() if self.current_process else None,
            "last_optimized_snapshot_id": self.last_optimized_snapshot_id,
            "last_minor_ms": self.last_minor_ms,
            "last_major_ms": self.last_major_ms,
            "last_full_ms": self.last_full_ms,
            "pending": self.pending,
            "maintenance": {k: v.to_dict() for k, v in self.maintenance.items()},
            "last_process": self.last_process.to_dict() if self.last_process else None,
            "failure": self.failure,
        }
