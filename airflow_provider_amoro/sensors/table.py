"""Sensors on Iceberg tables: a new commit (``TableChangeSensor``), pending work (``OptimizingNeededSensor``).

Both are deferrable by default (they hand the wait to a trigger in the triggerer, freeing the worker
slot) and also work in ``poke`` and ``reschedule`` modes with ``deferrable=False``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_amoro.assets import table_asset_uri
from airflow_provider_amoro.operators.base import declare_table_asset
from airflow_provider_amoro.properties import DEFAULT_CONN_ID
from airflow_provider_amoro.runtime.recorder import TableStateRecorder
from airflow_provider_amoro.triggers.table_change import (
    OptimizingNeededTrigger,
    TableChangeTrigger,
    branch_head,
    find_changes,
)

if TYPE_CHECKING:
    from pyiceberg.table import Table

BASELINE_KEY = "amoro.sensor.baseline"
"""Task-state key holding the baseline snapshot of a sensor task instance (survives reschedules)."""


def _last_seen_key(dag_id: str, task_id: str) -> str:
    return f"amoro.sensor.last_seen.{dag_id}.{task_id}"


class _TableSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("table", "amoro_conn_id")
    default_poll_interval: float = 30.0

    def __init__(
        self,
        *,
        table: str,
        amoro_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = True,
        poll_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        interval = float(poll_interval if poll_interval is not None else self.default_poll_interval)
        kwargs.setdefault("poke_interval", interval)
        super().__init__(**kwargs)
        self.table = table
        self.amoro_conn_id = amoro_conn_id
        self.deferrable = deferrable
        self.poll_interval = interval
        declare_table_asset(self, amoro_conn_id, table, outlet=False)

    def load_table(self) -> Table:
        from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

        return AmoroCatalogHook(amoro_conn_id=self.amoro_conn_id).load_table(self.table)

    def state(self, context: Mapping[str, Any]) -> TableStateRecorder:
        return TableStateRecorder(context, table_asset_uri(self.amoro_conn_id, self.table))

    def _defer_timeout(self) -> timedelta | None:
        timeout = float(self.timeout) if self.timeout is not None else None
        return timedelta(seconds=timeout) if timeout is not None and timeout > 0 else None


class TableChangeSensor(_TableSensor):
    """Waits for a new snapshot on a table's branch after a given or last-seen snapshot.

    The baseline is, in this order: ``after_snapshot_id`` when given; with ``remember=True`` the
    last snapshot this DAG's sensor task saw in an earlier run (kept in the table asset's state
    store, so no commit between runs is missed); otherwise the branch head when the sensor starts.
    The XCom value is the change summary (``snapshot_id`` = newest matching snapshot).

    Args:
        table: ``namespace.table`` (templated).
        amoro_conn_id: catalog connection id (templated).
        branch: branch to watch.
        after_snapshot_id: explicit baseline snapshot id (templated).
        ignore_optimizer: ignore snapshots with ``snapshot-producer=OPTIMIZE``.
        operations: only count these snapshot operations (``append``, ``overwrite``, ``delete``, ``replace``).
        remember: start from the last snapshot seen by this sensor task in an earlier DAG run.
        deferrable: wait in the triggerer (default) instead of a worker slot.
        poll_interval: seconds between polls (also the default ``poke_interval``).
        **kwargs: ``BaseSensorOperator`` arguments (``mode``, ``timeout``, ``soft_fail``, …).
    """

    template_fields: Sequence[str] = ("table", "amoro_conn_id", "after_snapshot_id")

    def __init__(
        self,
        *,
        branch: str = "main",
        after_snapshot_id: int | str | None = None,
        ignore_optimizer: bool = True,
        operations: Sequence[str] | None = None,
        remember: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.branch = branch
        self.after_snapshot_id = after_snapshot_id
        self.ignore_optimizer = ignore_optimizer
        self.operations = list(operations) if operations else None
        self.remember = remember

    def _baseline(self, context: Mapping[str, Any]) -> int | None:
        """Resolve the baseline once per task instance (kept in the task state store)."""
        store = context.get("task_state_store")
        if store is not None:
            saved = store.get(BASELINE_KEY)
            if isinstance(saved, dict):
                value = saved.get("snapshot_id")
                return int(value) if value is not None else None
        baseline: int | None
        if self.after_snapshot_id not in (None, ""):
            baseline = int(str(self.after_snapshot_id))
        else:
            baseline = None
            if self.remember:
                raw = self.state(context).get(_last_seen_key(self.dag_id, self.task_id))
                baseline = int(raw) if isinstance(raw, int) else None
            if baseline is None:
                baseline = branch_head(self.load_table(), self.branch)
        if store is not None:
            store.set(BASELINE_KEY, {"snapshot_id": baseline})
        return baseline

    def _check(self, baseline: int | None) -> dict[str, Any] | None:
        changes = find_changes(
            self.load_table(),
            after_snapshot_id=baseline,
            branch=self.branch,
            ignore_optimizer=self.ignore_optimizer,
            operations=self.operations,
        )
        if not changes.matching:
            return None
        return {
            "status": "changed",
            "table": self.table,
            "conn_id": self.amoro_conn_id,
            "branch": self.branch,
            "snapshot_id": changes.matching[0].snapshot_id,
            "previous_snapshot_id": baseline,
            **changes.to_payload(),
        }

    def _done(self, context: Mapping[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        if self.remember and payload.get("head_snapshot_id") is not None:
            self.state(context).set(_last_seen_key(self.dag_id, self.task_id), payload["head_snapshot_id"])
        return payload

    def poke(self, context: Any) -> bool | PokeReturnValue:
        """One check (poke/reschedule modes)."""
        payload = self._check(self._baseline(context))
        if payload is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._done(context, payload))

    def execute(self, context: Any) -> Any:
        """Check once; then defer to :class:`TableChangeTrigger` (or poke when not deferrable)."""
        if not self.deferrable:
            return super().execute(context)
        baseline = self._baseline(context)
        payload = self._check(baseline)
        if payload is not None:
            return self._done(context, payload)
        self.defer(
            trigger=TableChangeTrigger(
                table=self.table,
                amoro_conn_id=self.amoro_conn_id,
                branch=self.branch,
                after_snapshot_id=baseline,
                ignore_optimizer=self.ignore_optimizer,
                operations=self.operations,
                poll_interval=self.poll_interval,
                fire_once=True,
            ),
            method_name="execute_complete",
            timeout=self._defer_timeout(),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired."""
        if not event or event.get("status") != "changed":
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"table change trigger failed: {event}")
        return self._done(context, dict(event))


class OptimizingNeededSensor(_TableSensor):
    """Waits until the engine's evaluation finds optimizing work on a table.

    The last minor/major/full optimizing times come from the table's runtime state. The XCom value
    is the evaluation dict (``kind``, ``health_score``, ``cost``, ``reasons``, …).

    Args:
        table: ``namespace.table`` (templated).
        amoro_conn_id: catalog connection id (templated).
        deferrable: wait in the triggerer (default) instead of a worker slot.
        poll_interval: seconds between evaluations (also the default ``poke_interval``).
        **kwargs: ``BaseSensorOperator`` arguments.
    """

    default_poll_interval = 60.0

    def _trigger(self, context: Mapping[str, Any]) -> OptimizingNeededTrigger:
        last = self.state(context).last_times()
        return OptimizingNeededTrigger(
            table=self.table,
            amoro_conn_id=self.amoro_conn_id,
            last_minor_ms=last["last_minor_ms"],
            last_major_ms=last["last_major_ms"],
            last_full_ms=last["last_full_ms"],
            poll_interval=self.poll_interval,
        )

    def poke(self, context: Any) -> bool | PokeReturnValue:
        """One evaluation (poke/reschedule modes)."""
        evaluation = self._trigger(context).evaluate_now()
        if not evaluation.get("kind"):
            return False
        return PokeReturnValue(is_done=True, xcom_value=evaluation)

    def execute(self, context: Any) -> Any:
        """Evaluate once; then defer to :class:`OptimizingNeededTrigger` (or poke when not deferrable)."""
        if not self.deferrable:
            return super().execute(context)
        trigger = self._trigger(context)
        evaluation = trigger.evaluate_now()
        if evaluation.get("kind"):
            return evaluation
        self.defer(trigger=trigger, method_name="execute_complete", timeout=self._defer_timeout())

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger found work."""
        if not event or event.get("status") != "pending":
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"optimizing-needed trigger failed: {event}")
        evaluation: dict[str, Any] = event["evaluation"]
        return evaluation
