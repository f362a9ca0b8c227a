"""Triggers watching Iceberg tables: new commits (``TableChangeTrigger``) and pending optimizing work.

Both are async and never block the triggerer's event loop: catalog calls (connection lookup,
``load_table``) run in a worker thread with :func:`asyncio.to_thread`, and the CPU-heavy evaluation of
``OptimizingNeededTrigger`` (pyarrow) in a separate Python process. All triggers of one triggerer
process share one catalog client per connection (:func:`shared_hook`): a REST catalog gets its config
call and token once, not at every poll.

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
store of its asset (key ``amoro.watcher.last_snapshot_id``). A baseline that moved past a change the
trigger fired for is stored only at the next poll, after the triggerer has handed the event on: a
triggerer that dies in between fires again after its restart (at least once, never lost). Pass
``watched_asset`` (the asset's name) when one trigger may serve several assets.

A watcher whose table was dropped, or whose catalog rejects its credentials, for
``MAX_WATCHER_ERRORS`` polls in a row, fires one ``{"status": "error", ...}`` event (it shows as an
asset event, and the run it starts fails on the missing table) and ends; the error is remembered in
the asset state store (``amoro.watcher.error``) so that a restarted watcher backs off instead of
firing again for the same reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_provider_amoro.formats import SnapshotRecord, TableFormat, open_table
from airflow_provider_amoro.properties import DEFAULT_CONN_ID, PRODUCER_OPTIMIZE

if TYPE_CHECKING:
    from pyiceberg.table import Table

log = logging.getLogger(__name__)

WATCHER_STATE_KEY = "amoro.watcher.last_snapshot_id"
WATCHER_ERROR_KEY = "amoro.watcher.error"
MAX_WATCHER_ERRORS = 3
"""Consecutive polls finding the table dropped or the credentials rejected before a watcher gives up."""
CATALOG_CLIENT_TTL_S = 900.0
"""A shared catalog client is rebuilt after this long (connection edits, rotated secrets)."""
ERROR_BACKOFF_S = 600.0
"""A restarted watcher that already reported a terminal error waits this long before polling again."""
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


def _info(snapshot: SnapshotRecord) -> SnapshotInfo:
    return SnapshotInfo(
        snapshot_id=snapshot.snapshot_id,
        parent_snapshot_id=snapshot.parent_id,
        sequence_number=snapshot.sequence_number,
        timestamp_ms=snapshot.timestamp_ms,
        operation=snapshot.operation,
        producer=snapshot.producer,
        summary=dict(snapshot.summary),
    )


def _as_format(table: Table | TableFormat) -> TableFormat:
    return table if isinstance(table, TableFormat) else open_table(table)


def branch_head(table: Table | TableFormat, branch: str = "main") -> int | None:
    """Snapshot id the branch (or tag) points at, or None."""
    return _as_format(table).branch_head(branch)


def find_changes(
    table: Table | TableFormat,
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
    fmt = _as_format(table)
    head = fmt.branch_head(branch)
    changes = TableChanges(head_snapshot_id=head)
    if head is None or head == after_snapshot_id:
        return changes
    current: int | None = head
    walked = 0
    found = after_snapshot_id is None
    while current is not None and walked < MAX_WALK:
        if current == after_snapshot_id:
            found = True
            break
        snap = fmt.snapshot(current)
        if snap is None:
            break
        changes.new.append(_info(snap))
        current = snap.parent_id
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


_HOOKS: dict[str, tuple[float, Any]] = {}
_HOOKS_LOCK = threading.Lock()


def shared_hook(conn_id: str) -> Any:
    """The ``AmoroCatalogHook`` of ``conn_id`` shared by every trigger of this process.

    The hook keeps its pyiceberg catalog (and a REST catalog its session and token), so polling
    1,000 tables of one connection does not build 1,000 clients. Rebuilt after
    ``CATALOG_CLIENT_TTL_S`` and after an authentication failure (:func:`drop_shared_hook`).
    """
    from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

    now = time.monotonic()
    with _HOOKS_LOCK:
        entry = _HOOKS.get(conn_id)
        if entry is None or now - entry[0] > CATALOG_CLIENT_TTL_S:
            hook = AmoroCatalogHook(amoro_conn_id=conn_id)
            hook.get_catalog()  # built here, once: not by each of the threads that poll at once
            entry = (now, hook)
            _HOOKS[conn_id] = entry
        return entry[1]


def drop_shared_hook(conn_id: str) -> None:
    """Forget the shared client of ``conn_id`` (the next poll builds a new one)."""
    with _HOOKS_LOCK:
        _HOOKS.pop(conn_id, None)


def _load_table(conn_id: str, table: str) -> Table:
    loaded: Table = shared_hook(conn_id).load_table(table)
    return loaded


_AUTH_ERRORS = ("UnauthorizedError", "ForbiddenError", "OAuthError", "AuthorizationExpiredError")


def terminal_error(exc: BaseException) -> str | None:
    """``"dropped"`` for a table that no longer exists, ``"auth"`` for rejected credentials, else None."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (NoSuchTableError, NoSuchNamespaceError)):
            return "dropped"
        if type(seen).__name__ in _AUTH_ERRORS:
            return "auth"
        seen = seen.__cause__ or seen.__context__
    return None


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
        watched_asset: name of the asset this watcher feeds (its state store keeps the baseline).
            Needed only when trigger arguments could be shared by several assets; it also makes
            the arguments, and so the trigger, distinct per asset.
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
        watched_asset: str | None = None,
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
        self.watched_asset = watched_asset
        self._store_warned = False
        self._seen_location: tuple[str, int | None] | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and keyword arguments that rebuild this trigger."""
        kwargs: dict[str, Any] = {
            "table": self.table,
            "amoro_conn_id": self.amoro_conn_id,
            "branch": self.branch,
            "after_snapshot_id": self.after_snapshot_id,
            "ignore_optimizer": self.ignore_optimizer,
            "operations": self.operations,
            "poll_interval": self.poll_interval,
            "fire_once": self.fire_once,
        }
        if self.watched_asset is not None:
            kwargs["watched_asset"] = self.watched_asset
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    def _poll(self, baseline: int | None, first: bool) -> tuple[TableChanges, int | None]:
        """Blocking part of one poll (runs in a worker thread).

        Reads only the table's metadata location first; the table (its metadata file) is loaded
        only when that location differs from the last poll's, or the baseline moved meanwhile.
        """
        location = shared_hook(self.amoro_conn_id).metadata_location(self.table)
        seen = self._seen_location
        if not first and seen is not None and seen[0] == location and seen[1] == baseline:
            return TableChanges(head_snapshot_id=baseline), baseline
        table = _load_table(self.amoro_conn_id, self.table)
        changes, kept = self._changes(table, baseline, first)
        self._seen_location = (str(table.metadata_location), changes.head_snapshot_id)
        return changes, kept

    def _changes(self, table: Table, baseline: int | None, first: bool) -> tuple[TableChanges, int | None]:
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

    def _state(self) -> Any:
        """The state store accessor of the watched asset, None outside a watcher or when ambiguous."""
        stores = getattr(self, "asset_state_store", None)
        if stores is None:
            return None
        if self.watched_asset is not None:
            from airflow.sdk import Asset

            try:
                return stores[Asset(name=self.watched_asset, uri=self.watched_asset)]
            except (KeyError, TypeError) as exc:
                self._warn_store(f"{self.watched_asset!r} is not an asset this trigger watches: {exc}")
                return None
        return stores

    def _warn_store(self, problem: str) -> None:
        if not self._store_warned:
            self._store_warned = True
            log.warning("%s: baseline kept in memory only (%s)", self.table, problem)

    async def _read_state(self, key: str) -> Any:
        store = self._state()
        if store is None:
            return None
        try:
            return await store.aget(key)
        except ValueError as exc:  # one trigger, several assets, no watched_asset given
            self._warn_store(f"{exc}; pass watched_asset=<asset name> to the trigger")
        except Exception as exc:  # noqa: BLE001 - the state store is an optimisation here
            log.warning("cannot read %s from the asset state store: %s", key, exc)
        return None

    async def _write_state(self, key: str, value: Any) -> None:
        store = self._state()
        if store is None:
            return
        try:
            if value is None:
                await store.adelete(key)
            else:
                await store.aset(key, value)
        except ValueError as exc:
            self._warn_store(f"{exc}; pass watched_asset=<asset name> to the trigger")
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot write %s to the asset state store: %s", key, exc)

    async def _stored_baseline(self) -> int | None:
        value = await self._read_state(WATCHER_STATE_KEY)
        return int(value) if isinstance(value, int) else None

    async def _store_baseline(self, snapshot_id: int | None) -> None:
        if snapshot_id is not None:
            await self._write_state(WATCHER_STATE_KEY, snapshot_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until a matching snapshot appears; yield one event per batch of new commits."""
        baseline = self.after_snapshot_id
        if baseline is None:
            baseline = await self._stored_baseline()
        reported = await self._read_state(WATCHER_ERROR_KEY)
        if reported and not self.fire_once:
            log.warning(
                "%s: this watcher already reported %r; polling again in %.0f s",
                self.table,
                reported,
                ERROR_BACKOFF_S,
            )
            await asyncio.sleep(ERROR_BACKOFF_S)
        first = True
        failures = terminal = 0
        unconfirmed: int | None = None  # a baseline past a fired change, stored at the next poll
        while True:
            if unconfirmed is not None:
                # the event was handed to the triggerer a poll ago: now the baseline may move on
                await self._store_baseline(unconfirmed)
                unconfirmed = None
            try:
                changes, _ = await asyncio.to_thread(self._poll, baseline, first)
            except Exception as exc:  # noqa: BLE001 - a flaky catalog must not kill a watcher
                failures += 1
                kind = terminal_error(exc)
                if kind == "auth":
                    drop_shared_hook(self.amoro_conn_id)  # a new client fetches a new token
                terminal = terminal + 1 if kind else 0
                log.warning("polling %s failed, retrying in %.0fs: %s", self.table, self.poll_interval, exc)
                if terminal >= MAX_WATCHER_ERRORS or (self.fire_once and failures >= MAX_SENSOR_FAILURES):
                    reason = (
                        "table dropped"
                        if kind == "dropped"
                        else "credentials rejected"
                        if kind
                        else "failing"
                    )
                    yield _event(
                        {
                            "status": "error",
                            "table": self.table,
                            "conn_id": self.amoro_conn_id,
                            "reason": reason,
                            "message": str(exc)[:1000],
                        }
                    )
                    if not self.fire_once:
                        await self._write_state(WATCHER_ERROR_KEY, reason)
                    log.error("%s: watcher ends: %s (%s)", self.table, reason, exc)
                    return
                await asyncio.sleep(self.poll_interval)
                continue
            if failures and reported:
                await self._write_state(WATCHER_ERROR_KEY, None)
                reported = None
            failures = terminal = 0
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
                    unconfirmed = baseline
                else:
                    await self._store_baseline(baseline)  # nothing fired: nothing to lose
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

    async def evaluate_in_subprocess(self) -> dict[str, Any]:
        """Evaluate the table in a child Python process (``evaluate_child``); the event loop only waits.

        The connection is resolved here (in a thread), the child gets catalog name and properties
        on its stdin.
        """
        name, props = await asyncio.to_thread(shared_hook(self.amoro_conn_id).catalog_config)
        request = {
            "catalog": name,
            "properties": props,
            "table": self.table,
            "last_minor_ms": self.last_minor_ms,
            "last_major_ms": self.last_major_ms,
            "last_full_ms": self.last_full_ms,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "airflow_provider_amoro.triggers.evaluate_child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await proc.communicate(json.dumps(request).encode())
        except BaseException:  # cancelled (the trigger is stopped): do not leave the child behind
            if proc.returncode is None:
                proc.kill()
                await asyncio.shield(proc.wait())
            raise
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
            raise RuntimeError(f"evaluation of {self.table} failed: {tail[0]}")
        lines = out.decode().strip().splitlines()
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def evaluate_now(self) -> dict[str, Any]:
        """Load the table and evaluate it in this process (blocking; for callers outside a triggerer)."""
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
                evaluation = await self.evaluate_in_subprocess()
            except Exception as exc:  # noqa: BLE001 - retry on a flaky catalog
                log.warning(
                    "evaluating %s failed, retrying in %.0fs: %s", self.table, self.poll_interval, exc
                )
            else:
                if evaluation.get("kind"):
                    yield _event({"status": "pending", "table": self.table, "evaluation": evaluation})
                    return
            await asyncio.sleep(self.poll_interval)
