"""Task-side writer of a table's runtime state, through the Task SDK's asset state store only.

Task code never touches Airflow's database: :class:`TableStateRecorder` sends every read and write
through ``context["asset_state_store"]`` (the supervisor forwards them to the execution API). One
key per concern (see :mod:`airflow_provider_amoro.runtime.state`), each written by one kind of task,
so concurrent tasks (mapped executes, maintenance beside optimizing) never lose each other's writes.

Recording is best effort: a failure to record is logged and never fails the table operation
(the operation's outcome is also visible from the task-instance states the reader combines).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from airflow_provider_amoro.properties import MAINTENANCE_ACTIONS, OPTIMIZING_KINDS
from airflow_provider_amoro.runtime.state import (
    HISTORY_LIMIT,
    HISTORY_WITH_TASKS,
    KEY_EVALUATION,
    KEY_HISTORY,
    KEY_IDENTITY,
    KEY_MAINTENANCE_PREFIX,
    KEY_OPTIMIZED,
    KEY_PROCESS,
    KEY_STATUS,
    STATE_VALUE_BUDGET,
    MaintenanceRecord,
    ProcessRecord,
    ProcessStatus,
    StatusHint,
    TableStatus,
    maintenance_key,
)

log = logging.getLogger(__name__)


STATE_KEYS: tuple[str, ...] = (
    KEY_STATUS,
    KEY_EVALUATION,
    KEY_PROCESS,
    KEY_OPTIMIZED,
    KEY_HISTORY,
    *(KEY_MAINTENANCE_PREFIX + a.name for a in MAINTENANCE_ACTIONS),
)
"""The keys of a table's runtime state (moved on rename, cleared on re-creation)."""


def now_ms() -> int:
    """Current time in epoch milliseconds."""
    return int(time.time() * 1000)


def bounded_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trim a history list (newest first) to the entry, task and byte budgets."""
    out = [dict(h) for h in history[:HISTORY_LIMIT]]
    for entry in out[HISTORY_WITH_TASKS:]:
        entry["tasks"] = []
        summary = entry.get("summary")
        if isinstance(summary, dict) and "partitions" in summary:
            entry["summary"] = {k: v for k, v in summary.items() if k != "partitions"}
    while len(out) > 1 and len(json.dumps(out, separators=(",", ":"))) > STATE_VALUE_BUDGET:
        with_tasks = [e for e in out if e.get("tasks")]
        if len(with_tasks) > 1:
            with_tasks[-1]["tasks"] = []
        else:
            out.pop()
    return out


class TableStateRecorder:
    """Reads and writes one table's runtime-state keys in its asset state store.

    Args:
        context: the task's Airflow context.
        asset_uri: the table's asset URI; the asset must be an inlet or outlet of the task
            (operators built on ``AmoroTableOperator`` declare it), otherwise reads give the
            default and writes are logged and dropped.
        strict: raise instead of logging when a write fails (tests use this).
    """

    def __init__(self, context: Mapping[str, Any], asset_uri: str, *, strict: bool = False) -> None:
        self.context = context
        self.asset_uri = asset_uri
        self.strict = strict
        self._accessor: Any = None

    # ---- plumbing -------------------------------------------------------------------------------

    def _store(self) -> Any:
        if self._accessor is None:
            from airflow.sdk import Asset

            stores = self.context.get("asset_state_store")
            accessor = None
            if stores is not None:
                try:
                    accessor = stores[Asset(name=self.asset_uri, uri=self.asset_uri)]
                except (KeyError, TypeError):
                    accessor = None
            if accessor is None:
                # Only the task's own inlets and outlets: Airflow checks (or will check) that a task
                # writes the state of its own assets only, so no back door by URI.
                raise LookupError(
                    f"the table asset {self.asset_uri} is neither an inlet nor an outlet of this task "
                    "(a templated table?): its runtime state cannot be read or written"
                )
            self._accessor = accessor
        return self._accessor

    def get(self, key: str, default: Any = None) -> Any:
        """Read one key (``default`` when missing or unreadable)."""
        try:
            return self._store().get(key, default)
        except Exception as exc:
            if self.strict:
                raise
            log.warning("cannot read runtime state %s of %s: %s", key, self.asset_uri, exc)
            return default

    def set(self, key: str, value: Any) -> None:
        """Write one key."""
        try:
            self._store().set(key, value)
        except Exception as exc:
            if self.strict:
                raise
            log.warning("cannot record runtime state %s of %s: %s", key, self.asset_uri, exc)

    def _ti_fields(self) -> tuple[str, str, str, int]:
        ti = self.context.get("ti") or self.context.get("task_instance")
        if ti is None:
            return "", "", "", -1
        map_index = getattr(ti, "map_index", -1)
        return (
            str(getattr(ti, "dag_id", "")),
            str(getattr(ti, "run_id", "")),
            str(getattr(ti, "task_id", "")),
            -1 if map_index is None else int(map_index),
        )

    # ---- records --------------------------------------------------------------------------------

    def claim(self, table_uuid: str | None, name: str, *, previous: TableStateRecorder | None = None) -> str:
        """Make sure the state belongs to the table with ``table_uuid`` (state is keyed by UUID).

        - same UUID as recorded: nothing to do (``"same"``);
        - nothing recorded yet and ``previous`` (the state under the table's former name, an inlet
          of this task) belongs to this UUID: its records are copied over (``"renamed"``): a
          rename keeps the history;
        - another UUID recorded: the table was dropped and re-created under this name; the old
          table's records are cleared (``"recreated"``): it starts fresh;
        - otherwise the identity is just recorded (``"new"``).
        """
        if table_uuid is None:
            return "unknown"
        identity: dict[str, Any] = {"uuid": table_uuid, "name": name, "since_ms": now_ms()}
        stored = self.get(KEY_IDENTITY)
        stored_uuid = stored.get("uuid") if isinstance(stored, dict) else None
        if stored_uuid == table_uuid:
            if isinstance(stored, dict) and stored.get("name") != name:
                self.set(KEY_IDENTITY, {**stored, "name": name})
            return "same"
        outcome = "new"
        if stored_uuid is not None:
            for key in STATE_KEYS:
                self.delete(key)
            outcome = "recreated"
            log.warning(
                "%s was re-created (table UUID %s, was %s): its runtime state starts fresh",
                name,
                table_uuid,
                stored_uuid,
            )
        elif previous is not None:
            old = previous.get(KEY_IDENTITY)
            if isinstance(old, dict) and old.get("uuid") == table_uuid:
                identity["since_ms"] = old.get("since_ms") or 0
                for key in STATE_KEYS:
                    value = previous.get(key)
                    if value is not None:
                        self.set(key, value)
                outcome = "renamed"
                log.info("%s was renamed from %s: its runtime state moves along", name, old.get("name"))
        if outcome == "new":
            identity["since_ms"] = 0  # first sight of this table: every earlier run is its own
        self.set(KEY_IDENTITY, identity)
        return outcome

    def delete(self, key: str) -> None:
        """Delete one key (missing is fine)."""
        try:
            self._store().delete(key)
        except Exception as exc:
            if self.strict:
                raise
            log.warning("cannot delete runtime state %s of %s: %s", key, self.asset_uri, exc)

    def set_status(self, status: TableStatus, kind: str | None = None) -> None:
        """Record the status this task puts the table in (a hint trusted while its run is active)."""
        dag_id, run_id, task_id, map_index = self._ti_fields()
        hint = StatusHint(
            status=status.value,
            kind=kind,
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
            map_index=map_index,
            updated_ms=now_ms(),
        )
        self.set(KEY_STATUS, hint.to_dict())

    def record_evaluation(self, evaluation: Mapping[str, Any]) -> None:
        """Record the last evaluation: what is pending (kind None = nothing)."""
        dag_id, run_id, task_id, _ = self._ti_fields()
        record = dict(evaluation)
        record.setdefault("evaluated_ms", now_ms())
        record.update(dag_id=dag_id, run_id=run_id, task_id=task_id)
        self.set(KEY_EVALUATION, record)

    def record_process(self, process: ProcessRecord) -> None:
        """Record the current process (planned or running); tasks are not stored here."""
        record = process.to_dict()
        record["tasks"] = []
        self.set(KEY_PROCESS, record)

    def current_process(self, *, live: bool = True) -> ProcessRecord | None:
        """The process last recorded by :meth:`record_process`.

        Args:
            live: when the record says ``RUNNING`` but its DAG run is no longer active (asked through
                the Task SDK), report it ``CLOSED``: a run that died never leaves a stale RUNNING
                process behind (snapshot expiry protects a running process's base snapshot).
        """
        raw = self.get(KEY_PROCESS)
        if not isinstance(raw, dict):
            return None
        proc = ProcessRecord.from_dict(raw)
        if live and proc.status == ProcessStatus.RUNNING.value and proc.dag_id and proc.run_id:
            state = self._dagrun_state(proc.dag_id, proc.run_id)
            if state is not None and state not in ("queued", "running"):
                proc.status = ProcessStatus.CLOSED.value
        return proc

    def _dagrun_state(self, dag_id: str, run_id: str) -> str | None:
        ti = self.context.get("ti")
        getter = getattr(ti, "get_dagrun_state", None)
        if getter is None:
            return None
        try:
            state = getter(dag_id, run_id)
        except Exception as exc:  # noqa: BLE001 - an unknown run (cleaned up) is not active
            log.info("cannot read the state of run %s/%s: %s", dag_id, run_id, exc)
            return "missing"
        return str(getattr(state, "value", state))

    def record_optimized(
        self, *, kind: str | None, snapshot_id: int | None, commit_ms: int | None = None
    ) -> dict[str, Any]:
        """After a successful commit: last optimized snapshot and last time of this kind."""
        record = self.optimized()
        when = commit_ms if commit_ms is not None else now_ms()
        if snapshot_id is not None:
            record["last_optimized_snapshot_id"] = snapshot_id
        if kind in OPTIMIZING_KINDS:
            record[f"last_{kind}_ms"] = when
        record["last_commit_ms"] = when
        self.set(KEY_OPTIMIZED, record)
        return record

    def optimized(self) -> dict[str, Any]:
        """The ``amoro.optimized`` record (empty dict when none)."""
        raw = self.get(KEY_OPTIMIZED)
        return dict(raw) if isinstance(raw, dict) else {}

    def last_times(self) -> dict[str, int | None]:
        """``last_minor_ms``/``last_major_ms``/``last_full_ms`` for the engine's ``evaluate``/``plan``."""
        rec = self.optimized()
        return {k: rec.get(k) for k in ("last_minor_ms", "last_major_ms", "last_full_ms")}

    def append_history(self, process: ProcessRecord) -> None:
        """Add a finished process to the bounded history (newest first, same id replaced).

        The value stays under :data:`STATE_VALUE_BUDGET` bytes: only the newest
        :data:`HISTORY_WITH_TASKS` processes keep per-task records, then the oldest entries go.
        """
        raw = self.get(KEY_HISTORY)
        history = [h for h in raw if isinstance(h, dict)] if isinstance(raw, list) else []
        history = [h for h in history if h.get("process_id") != process.process_id]
        history.insert(0, process.to_dict())
        self.set(KEY_HISTORY, bounded_history(history))

    def record_maintenance(self, action: str, result: Mapping[str, Any], *, success: bool = True) -> None:
        """Record the last run of a maintenance action with its result."""
        dag_id, run_id, task_id, _ = self._ti_fields()
        run = MaintenanceRecord(
            action=action,
            time_ms=now_ms(),
            success=success,
            result=dict(result),
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
        )
        self.set(maintenance_key(action), run.to_dict())

    def last_maintenance(self, action: str) -> MaintenanceRecord | None:
        """The last recorded run of a maintenance action."""
        raw = self.get(maintenance_key(action))
        return MaintenanceRecord.from_dict(raw) if isinstance(raw, dict) else None
