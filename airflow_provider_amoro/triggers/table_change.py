"""Triggers watching Iceberg tables: new commits (``TableChangeTrigger``) and pending optimizing work.

Both are async and never block the triggerer's event loop: every catalog call (connection lookup,
``load_table``, evaluation) runs in a worker thread with :func:`asyncio.to_thread`.

``TableChangeTrigger`` is a ``BaseEventTrigger``, so it can drive event-based scheduling::

    from airflow.sdk import DAG, Asset, AssetWatcher
    from airflow_provider_amoro.assets import table_change_asset
    from airflow_provider_amoro.triggers.table_change import TableChangeTrigger

    changes = table_change_asset(
        "amoro_default",
        "db.orders",
        watchers=[AssetWatcher(name="orders_commits", trigger=TableChangeTrigger(table="db.orders"))],
    )
    with DAG("on_orders_commit", schedule=[changes]): ...

Schedule on the *change* asset (not on the table asset): the table asset also receives the events
that operators emit after their own commits, while the change asset only gets the trigger's events,
and the trigger ignores the optimizer's own snapshots (``snapshot-producer=OPTIMIZE``), so an
optimizing commit never schedules the table's DAG again.

When it runs as a watcher, the trigger keeps the last snapshot id it has seen in the asset state
store of its asset (key ``amoro.watcher.last_snapshot_id``), so a triggerer restart neither loses
nor repeats commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_provider_amoro.properties import DEFAULT_CONN_ID, PRODUCER_OPTIMIZE, SNAPSHOT_PRODUCER

if TYPE_CHECKING:
    from pyiceberg.table import Table

log = logging.getLogger(__name__)

WATCHER_STATE_KEY = "amoro.watcher.last_snapshot_id"
MAX_SENSOR_FAILURES = 5
"""Consecutive failed polls after which a ``fire_once`` trigger reports an error (watchers retry forever)."""
MAX_WALK = 10_000
"""At most this many snapshots are walked back from the branch head per poll."""


@dataclass
class SnapshotInfo:
    """One snapshot as the change detection reports it."""

    snapshot_id: int
    parent_snapshot_id: int | None
    sequence_number: int | None
    timestamp_ms: int
    operation: str | None
    producer: str | None
    summary: dict[str, str] = field(default_factory=dict)


@dataclass
class TableChanges:
    """What changed on a branch since a snapshot.

    Attributes:
        head_snapshot_id: current snapshot of the branch (None: branch absent or table empty).
        new: snapshots after the baseline, newest first (all of them, filtered or not).
        matching: the subset of ``new`` that passes the filters, newest first.
        baseline_found: whether the baseline was found in the branch's ancestry (False after a
            rollback or expiry; then only the head counts as new).
    """

    head_snapshot_id: int | None
    new: list[SnapshotInfo] = field(default_factory=list)
    matching: list[SnapshotInfo] = field(default_factory=list)
    baseline_found: bool = True

    def to_payload(self) -> dict[str, Any]:
        """JSON-safe summary for a trigger event or XCom."""
        return {
            "head_snapshot_id": self.head_snapshot_id,
            "baseline_found": self.baseline_found,
            "new_snapshot_count": len(self.new),
            "snapshots": [asdict(s) for s in self.matching[:100]],
        }


def _info(snapshot: Any) -> SnapshotInfo:
    summary = snapshot.summary
    props: dict[str, str] = dict(summary.additional_properties) if summary is not None else {}
    op = summary.operation.value if summary is not None and summary.operation is not None else None
    return SnapshotInfo(
        snapshot_id=int(snapshot.snapshot_id),
        parent_snapshot_id=snapshot.parent_snapshot_id,
        sequence_number=snapshot.sequence_number,
        timestamp_ms=int(snapshot.timestamp_ms),
        operation=op,
        producer=props.get(SNAPSHOT_PRODUCER),
        summary={k: str(v) for k, v in props.items()},
    )


def branch_head(table: Table, branch: str = "main") -> int | None:
    """Snapshot id the branch (or tag) points at, or None."""
    ref = table.metadata.refs.get(branch)
    if ref is None:
        return None
    return int(ref.snapshot_id)


def find_changes(
    table: Table,
    *,
    after_snapshot_id: int | None,
    branch: str = "main",
    ignore_optimizer: bool = True,
    operations: Sequence[str] | None = None,
) -> TableChanges:
    """Snapshots committed on ``branch`` after ``after_snapshot_id``, with the trigger's filters.

    Args:
        table: a freshly loaded table.
        after_snapshot_id: the baseline; None means "since the table was created" (every ancestor).
        branch: branch name (``main`` by default).
        ignore_optimizer: drop snapshots whose summary has ``snapshot-producer=OPTIMIZE``.
        operations: keep only these operations (``append``, ``overwrite``, ``delete``, ``replace``).

    Returns:
        The :class:`TableChanges`.
    """
    head = branch_head(table, branch)
    changes = TableChanges(head_snapshot_id=head)
    if head is None or head == after_snapshot_id:
        return changes
    by_id = {s.snapshot_id: s for s in table.metadata.snapshots}
    current: int | None = head
    walked = 0
    found = after_snapshot_id is None
    while current is not None and walked < MAX_WALK:
        if current == after_snapshot_id:
            found = True
            break
        snap = by_id.get(current)
        if snap is None:
            break
        changes.new.append(_info(snap))
        current = snap.parent_snapshot_id
        walked += 1
    if not found:
        # The baseline is not an ancestor (rollback, expired, other branch): report only the head.
        changes.baseline_found = False
        changes.new = changes.new[:1]
    ops = {o.lower() for o in operations} if operations else None
    changes.matching = [
        s
        for s in changes.new
        if not (ignore_optimizer and s.producer == PRODUCER_OPTIMIZE)
        and (ops is None or (s.operation or "").lower() in ops)
    ]
    return changes


def _event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


def _load_table(conn_id: str, table: str) -> Table:
    from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

    return AmoroCatalogHook(amoro_conn_id=conn_id).load_table(table)


class TableChangeTrigger(BaseEventTrigger):
    """Fires when a new snapshot that passes the filters is committed on a table's branch.

    Args:
        table: ``namespace.table``.
        amoro_conn_id: catalog connection id.
        branch: the branch to watch.
        after_snapshot_id: baseline snapshot; None = the branch head when the trigger starts (or, in
            an ``AssetWatcher``, the last snapshot this watcher saw, kept in the asset state store).
        ignore_optimizer: ignore snapshots the optimizer committed (``snapshot-producer=OPTIMIZE``).
        operations: only fire for these snapshot operations (e.g. ``["append", "overwrite"]``).
        poll_interval: seconds between polls.
        fire_once: stop after the first event (deferrable sensors); watchers keep running.
    """

    def __init__(
        self,
        *,
        table: str,
        amoro_conn_id: str = DEFAULT_CONN_ID,
        branch: str = "main",
        after_snapshot_id: int | None = None,
        ignore_optimizer: bool = True,
        operations: Sequence[str] | None = None,
        poll_interval: float = 30.0,
        fire_once: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.table = table
        self.amoro_conn_id = amoro_conn_id
        self.branch = branch
        self.after_snapshot_id = after_snapshot_id
        self.ignore_optimizer = ignore_optimizer
        self.operations = list(operations) if operations else None
        self.poll_interval = float(poll_interval)
        self.fire_once = fire_once

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "table": self.table,
                "amoro_conn_id": self.amoro_conn_id,
                "branch": self.branch,
                "after_snapshot_id": self.after_snapshot_id,
                "ignore_optimizer": self.ignore_optimizer,
                "operations": self.operations,
                "poll_interval": self.poll_interval,
                "fire_once": self.fire_once,
            },
        )

    def _poll(self, baseline: int | None, first: bool) -> tuple[TableChanges, int | None]:
        """Blocking part of one poll (runs in a worker thread)."""
        table = _load_table(self.amoro_conn_id, self.table)
        if first and baseline is None:
            return TableChanges(head_snapshot_id=branch_head(table, self.branch)), None
        changes = find_changes(
            table,
            after_snapshot_id=baseline,
            branch=self.branch,
            ignore_optimizer=self.ignore_optimizer,
            operations=self.operations,
        )
        return changes, baseline

    async def _stored_baseline(self) -> int | None:
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return None
        try:
            value = await store.aget(WATCHER_STATE_KEY)
        except Exception as exc:  # noqa: BLE001 - the state store is an optimisation here
            log.warning("cannot read %s from the asset state store: %s", WATCHER_STATE_KEY, exc)
            return None
        return int(value) if isinstance(value, int) else None

    async def _store_baseline(self, snapshot_id: int | None) -> None:
        store = getattr(self, "asset_state_store", None)
        if store is None or snapshot_id is None:
            return
        try:
            await store.aset(WATCHER_STATE_KEY, snapshot_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot write %s to the asset state store: %s", WATCHER_STATE_KEY, exc)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until a matching snapshot appears; yield one event per batch of new commits."""
        baseline = self.after_snapshot_id
        if baseline is None:
            baseline = await self._stored_baseline()
        first = True
        failures = 0
        while True:
            try:
                changes, _ = await asyncio.to_thread(self._poll, baseline, first)
            except Exception as exc:  # noqa: BLE001 - a flaky catalog must not kill a watcher
                failures += 1
                log.warning("polling %s failed, retrying in %.0fs: %s", self.table, self.poll_interval, exc)
                if self.fire_once and failures >= MAX_SENSOR_FAILURES:
                    yield _event({"status": "error", "table": self.table, "message": str(exc)})
                    return
                await asyncio.sleep(self.poll_interval)
                continue
            failures = 0
            if first and baseline is None:
                baseline = changes.head_snapshot_id
                await self._store_baseline(baseline)
                first = False
                await asyncio.sleep(self.poll_interval)
                continue
            first = False
            if changes.head_snapshot_id is not None and changes.head_snapshot_id != baseline:
                previous, baseline = baseline, changes.head_snapshot_id
                if changes.matching:
                    yield _event(
                        {
                            "status": "changed",
                            "table": self.table,
                            "conn_id": self.amoro_conn_id,
                            "branch": self.branch,
                            "snapshot_id": changes.matching[0].snapshot_id,
                            "previous_snapshot_id": previous,
                            "detected_ms": int(time.time() * 1000),
                            **changes.to_payload(),
                        }
                    )
                    if self.fire_once:
                        return
                await self._store_baseline(baseline)
            await asyncio.sleep(self.poll_interval)


class OptimizingNeededTrigger(BaseTrigger):
    """Fires once the engine's evaluation of a table finds optimizing work.

    Args:
        table: ``namespace.table``.
        amoro_conn_id: catalog connection id.
        last_minor_ms, last_major_ms, last_full_ms: last optimizing times (from the runtime state).
        poll_interval: seconds between evaluations.
    """

    def __init__(
        self,
        *,
        table: str,
        amoro_conn_id: str = DEFAULT_CONN_ID,
        last_minor_ms: int | None = None,
        last_major_ms: int | None = None,
        last_full_ms: int | None = None,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.table = table
        self.amoro_conn_id = amoro_conn_id
        self.last_minor_ms = last_minor_ms
        self.last_major_ms = last_major_ms
        self.last_full_ms = last_full_ms
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "table": self.table,
                "amoro_conn_id": self.amoro_conn_id,
                "last_minor_ms": self.last_minor_ms,
                "last_major_ms": self.last_major_ms,
                "last_full_ms": self.last_full_ms,
                "poll_interval": self.poll_interval,
            },
        )

    def evaluate_now(self) -> dict[str, Any]:
        """Load the table and evaluate it (blocking; runs in a worker thread)."""
        from airflow_provider_amoro.optimizing import evaluate

        table = _load_table(self.amoro_conn_id, self.table)
        result = evaluate(
            table,
            last_minor_ms=self.last_minor_ms,
            last_major_ms=self.last_major_ms,
            last_full_ms=self.last_full_ms,
        )
        out: dict[str, Any] = result.to_dict()
        return out

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Evaluate every ``poll_interval`` seconds; yield the evaluation once work is pending."""
        while True:
            try:
                evaluation = await asyncio.to_thread(self.evaluate_now)
            except Exception as exc:  # noqa: BLE001 - retry on a flaky catalog
                log.warning(
                    "evaluating %s failed, retrying in %.0fs: %s", self.table, self.poll_interval, exc
                )
            else:
                if evaluation.get("kind"):
                    yield _event({"status": "pending", "table": self.table, "evaluation": evaluation})
                    return
            await asyncio.sleep(self.poll_interval)
