"""TableChangeTrigger / OptimizingNeededTrigger against real SQLite catalogs (connection by env var)."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from typing import Any

import pytest
from airflow_fixtures import append_rows, compact_all, small_file_table

from airflow_provider_amoro.triggers.table_change import (
    OptimizingNeededTrigger,
    TableChangeTrigger,
    branch_head,
    find_changes,
)


async def _collect(trigger: Any, events: list[dict[str, Any]]) -> None:
    async for event in trigger.run():
        events.append(event.payload)


async def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def test_serialize_round_trip() -> None:
    trigger = TableChangeTrigger(
        table="db.t",
        amoro_conn_id="lake",
        branch="audit",
        after_snapshot_id=123,
        ignore_optimizer=False,
        operations=["append", "overwrite"],
        poll_interval=5,
        fire_once=True,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_amoro.triggers.table_change.TableChangeTrigger"
    rebuilt = TableChangeTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["operations"] == ["append", "overwrite"] and kwargs["after_snapshot_id"] == 123
    # Airflow's own serializer (used when a watcher is stored) accepts the kwargs and hashes them stably.
    assert TableChangeTrigger.hash(classpath, kwargs) == TableChangeTrigger.hash(
        classpath, rebuilt.serialize()[1]
    )

    needed = OptimizingNeededTrigger(table="db.t", amoro_conn_id="lake", last_minor_ms=5, poll_interval=7)
    cp2, kw2 = needed.serialize()
    assert OptimizingNeededTrigger(**kw2).serialize() == (cp2, kw2)


def test_fires_on_append_not_on_optimize_commit(amoro_conn: Any) -> None:
    table = small_file_table(amoro_conn, "db.watch", files=3)

    async def scenario() -> tuple[list[dict[str, Any]], int, int]:
        events: list[dict[str, Any]] = []
        trigger = TableChangeTrigger(table="db.watch", poll_interval=0.05)
        task = asyncio.create_task(_collect(trigger, events))
        await asyncio.sleep(0.6)  # the first poll takes the branch head as the baseline
        optimize_id = await asyncio.to_thread(compact_all, table)
        await asyncio.sleep(0.8)  # several polls see the OPTIMIZE snapshot
        assert events == [], events
        append_id = await asyncio.to_thread(append_rows, table, [1000, 1001])
        assert await _wait_for(lambda: bool(events), 10)
        task.cancel()
        return events, optimize_id, append_id

    events, optimize_id, append_id = asyncio.run(scenario())
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "changed" and event["snapshot_id"] == append_id
    assert event["previous_snapshot_id"] == optimize_id  # baseline moved past the ignored snapshot
    assert [s["snapshot_id"] for s in event["snapshots"]] == [append_id]
    assert event["snapshots"][0]["operation"] == "append"


def test_filters_find_changes(amoro_conn: Any) -> None:
    table = small_file_table(amoro_conn, "db.filters", files=2)
    base = branch_head(table)
    optimize_id = compact_all(table)
    append_id = append_rows(table, [7])
    table.refresh()
    everything = find_changes(table, after_snapshot_id=base, ignore_optimizer=False)
    assert [s.snapshot_id for s in everything.matching] == [append_id, optimize_id]
    assert everything.new[1].producer == "OPTIMIZE" and everything.new[1].operation == "replace"
    default = find_changes(table, after_snapshot_id=base)
    assert [s.snapshot_id for s in default.matching] == [append_id]
    only_deletes = find_changes(table, after_snapshot_id=base, operations=["delete"])
    assert only_deletes.matching == [] and len(only_deletes.new) == 2
    replaces = find_changes(table, after_snapshot_id=base, ignore_optimizer=False, operations=["REPLACE"])
    assert [s.snapshot_id for s in replaces.matching] == [optimize_id]
    assert find_changes(table, after_snapshot_id=append_id).new == []
    lost = find_changes(table, after_snapshot_id=42)  # not an ancestor: only the head is reported
    assert not lost.baseline_found and [s.snapshot_id for s in lost.new] == [append_id]
    assert branch_head(table, "nope") is None


def test_ignore_optimizer_false_fires_on_optimize(amoro_conn: Any) -> None:
    table = small_file_table(amoro_conn, "db.all", files=2)
    base = branch_head(table)
    optimize_id = compact_all(table)

    async def first_event() -> dict[str, Any]:
        trigger = TableChangeTrigger(
            table="db.all", after_snapshot_id=base, ignore_optimizer=False, poll_interval=0.05, fire_once=True
        )
        events = [e.payload async for e in trigger.run()]
        assert len(events) == 1  # fire_once: the generator ends after the event
        return events[0]

    event = asyncio.run(asyncio.wait_for(first_event(), 20))
    assert event["snapshot_id"] == optimize_id


def test_poll_does_not_block_the_event_loop(amoro_conn: Any) -> None:
    """A catalog DB locked for 1.5 s makes each poll slow; the loop keeps ticking meanwhile."""
    table = small_file_table(amoro_conn, "db.slow", files=1)
    base = branch_head(table)
    append_id = append_rows(table, [99])
    db_path = amoro_conn.properties["uri"].removeprefix("sqlite:///")
    locked = threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(db_path, timeout=10, check_same_thread=False)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(1.5)
        conn.rollback()
        conn.close()

    async def scenario() -> tuple[list[float], float, dict[str, Any]]:
        holder = threading.Thread(target=hold_lock)
        holder.start()
        await asyncio.to_thread(locked.wait, 5)
        ticks: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        start = time.monotonic()
        trigger = TableChangeTrigger(
            table="db.slow", after_snapshot_id=base, poll_interval=0.05, fire_once=True
        )
        events = [e.payload async for e in trigger.run()]
        elapsed = time.monotonic() - start
        stop.set()
        await tick_task
        holder.join()
        return ticks, elapsed, events[0]

    # A full garbage collection of the heap that hundreds of earlier tests left behind holds the
    # GIL for most of a second on a 2-core machine, in whichever thread allocates: a pause of the
    # test process, not of the trigger. Collect and freeze that heap first, so the loop's gaps
    # measure the trigger alone; collections during the scenario are recorded for the message.
    import gc

    pauses: list[float] = []
    started: list[float] = []

    def timing(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(time.monotonic())
        elif started:
            pauses.append(time.monotonic() - started.pop())

    gc.collect()
    gc.freeze()
    gc.callbacks.append(timing)
    try:
        ticks, elapsed, event = asyncio.run(scenario())
    finally:
        gc.callbacks.remove(timing)
        gc.unfreeze()
    assert event["snapshot_id"] == append_id
    assert elapsed >= 1.0, f"the catalog was not slow ({elapsed:.2f} s): the test would prove nothing"
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 50 and max(gaps, default=elapsed) < 0.25, (
        f"loop blocked: max gap {max(gaps, default=elapsed):.3f} s "
        f"(longest garbage collection meanwhile: {max(pauses, default=0.0):.3f} s)"
    )


def test_sensor_mode_trigger_reports_errors(amoro_conn: Any) -> None:
    async def run() -> list[dict[str, Any]]:
        trigger = TableChangeTrigger(
            table="db.missing", poll_interval=0.01, fire_once=True, after_snapshot_id=1
        )
        return [e.payload async for e in trigger.run()]

    amoro_conn.create_namespace("db")
    events = asyncio.run(asyncio.wait_for(run(), 30))
    assert events[0]["status"] == "error" and "missing" in events[0]["message"]


@pytest.mark.parametrize("files", [1, 4])
def test_optimizing_needed_trigger(amoro_conn: Any, files: int) -> None:
    small_file_table(amoro_conn, f"db.need{files}", files=files)

    async def first(trigger: OptimizingNeededTrigger) -> dict[str, Any] | None:
        gen = trigger.run()
        try:
            event = await asyncio.wait_for(gen.__anext__(), 3 if trigger.table.endswith("1") else 30)
        except asyncio.TimeoutError:
            return None
        return dict(event.payload)

    event = asyncio.run(first(OptimizingNeededTrigger(table=f"db.need{files}", poll_interval=0.1)))
    if files == 1:
        assert event is None  # one file: nothing to optimize, the trigger keeps waiting
    else:
        assert event is not None and event["status"] == "pending"
        assert event["evaluation"]["kind"] == "minor"


class _InjectedStore:
    """Stands in for the asset state store the triggerer injects into a watcher (aget/aset only)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


def test_watcher_resumes_from_the_last_seen_snapshot_after_a_restart(amoro_conn: Any) -> None:
    from airflow_provider_amoro.triggers.table_change import WATCHER_STATE_KEY

    table = small_file_table(amoro_conn, "db.restart", files=1)
    store = _InjectedStore()

    async def first_life() -> tuple[list[dict[str, Any]], Any]:
        events: list[dict[str, Any]] = []
        trigger = TableChangeTrigger(table="db.restart", poll_interval=0.05)
        trigger.asset_state_store = store  # type: ignore[assignment]
        task = asyncio.create_task(_collect(trigger, events))
        assert await _wait_for(lambda: WATCHER_STATE_KEY in store.values, 10)
        armed = store.values[WATCHER_STATE_KEY]
        await asyncio.to_thread(append_rows, table, [1])
        assert await _wait_for(lambda: bool(events), 10)
        # the event is out, but the baseline moves on only at the next poll (the event handed on)
        assert store.values[WATCHER_STATE_KEY] == armed
        assert await _wait_for(lambda: store.values[WATCHER_STATE_KEY] != armed, 10)
        task.cancel()
        return events, armed

    events, _ = asyncio.run(first_life())
    seen = store.values[WATCHER_STATE_KEY]
    assert events[0]["snapshot_id"] == seen
    missed = append_rows(table, [2])  # committed while the triggerer is down

    async def second_life() -> dict[str, Any]:
        trigger = TableChangeTrigger(table="db.restart", poll_interval=0.05)
        trigger.asset_state_store = store  # type: ignore[assignment]
        gen = trigger.run()
        return dict((await asyncio.wait_for(gen.__anext__(), 10)).payload)

    event = asyncio.run(second_life())
    assert event["snapshot_id"] == missed and event["previous_snapshot_id"] == seen


def test_a_triggerer_dying_right_after_an_event_fires_it_again_never_loses_it(amoro_conn: Any) -> None:
    """The baseline is stored only after the event was handed on: a crash in between repeats it."""
    from airflow_provider_amoro.triggers.table_change import WATCHER_STATE_KEY

    table = small_file_table(amoro_conn, "db.crash", files=1)
    store = _InjectedStore()

    async def life() -> dict[str, Any]:
        trigger = TableChangeTrigger(table="db.crash", poll_interval=0.05)
        trigger.asset_state_store = store  # type: ignore[assignment]
        gen = trigger.run()
        task = asyncio.ensure_future(gen.__anext__())
        if WATCHER_STATE_KEY not in store.values:
            assert await _wait_for(lambda: WATCHER_STATE_KEY in store.values, 10)
            await asyncio.to_thread(append_rows, table, [1])
        event = dict((await asyncio.wait_for(task, 10)).payload)
        await gen.aclose()  # dies before the next poll: the event may not have reached the DB
        return event

    first = asyncio.run(life())
    again = asyncio.run(life())  # restarted: the same commit fires again
    assert first["snapshot_id"] == again["snapshot_id"] == branch_head(table.refresh())


class _TwoAssetStore:
    """What the triggerer injects when one trigger feeds two assets: subscript by asset, or fail."""

    def __init__(self, names: list[str]) -> None:
        self.by_name = {n: _InjectedStore() for n in names}

    def __getitem__(self, asset: Any) -> _InjectedStore:
        return self.by_name[asset.name]

    async def aget(self, key: str, default: Any = None) -> Any:
        raise ValueError(
            "Task has 2 concrete inlets and outlets — use context['asset_state_store'][MY_ASSET]"
        )

    async def aset(self, key: str, value: Any) -> None:
        raise ValueError(
            "Task has 2 concrete inlets and outlets — use context['asset_state_store'][MY_ASSET]"
        )


def test_shared_trigger_arguments_keep_a_baseline_per_named_asset(amoro_conn: Any) -> None:
    from airflow_provider_amoro.triggers.table_change import WATCHER_STATE_KEY

    table = small_file_table(amoro_conn, "db.shared", files=1)
    store = _TwoAssetStore(["feed-a", "feed-b"])

    async def arm(trigger: TableChangeTrigger) -> None:
        trigger.asset_state_store = store  # type: ignore[assignment]
        task = asyncio.create_task(_collect(trigger, []))
        await asyncio.sleep(0.5)
        task.cancel()

    # named: the baseline lands in that asset's store
    asyncio.run(arm(TableChangeTrigger(table="db.shared", poll_interval=0.05, watched_asset="feed-b")))
    assert store.by_name["feed-b"].values[WATCHER_STATE_KEY] == branch_head(table)
    assert store.by_name["feed-a"].values == {}
    # unnamed and shared: no crash, the watcher still works with an in-memory baseline
    events: list[dict[str, Any]] = []

    async def unnamed() -> None:
        trigger = TableChangeTrigger(table="db.shared", poll_interval=0.05)
        trigger.asset_state_store = store  # type: ignore[assignment]
        task = asyncio.create_task(_collect(trigger, events))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(append_rows, table, [5])
        assert await _wait_for(lambda: bool(events), 10)
        task.cancel()

    asyncio.run(unnamed())
    assert events[0]["status"] == "changed"
    kw = TableChangeTrigger(table="db.shared", watched_asset="feed-a").serialize()[1]
    assert kw["watched_asset"] == "feed-a"  # distinct arguments per asset: no sharing at all


def test_a_dropped_table_ends_the_watcher_with_an_error_event(amoro_conn: Any) -> None:
    from airflow_provider_amoro.triggers.table_change import WATCHER_ERROR_KEY

    small_file_table(amoro_conn, "db.gone", files=1)
    store = _InjectedStore()

    async def watch() -> list[dict[str, Any]]:
        trigger = TableChangeTrigger(table="db.gone", poll_interval=0.05)
        trigger.asset_state_store = store  # type: ignore[assignment]
        events: list[dict[str, Any]] = []
        task = asyncio.create_task(_collect(trigger, events))
        assert await _wait_for(lambda: bool(store.values), 10)
        await asyncio.to_thread(amoro_conn.drop_table, "db.gone")
        await asyncio.wait_for(task, 20)  # the generator ends by itself
        return events

    events = asyncio.run(watch())
    assert [e["status"] for e in events] == ["error"]
    assert events[0]["reason"] == "table dropped" and "gone" in events[0]["message"]
    assert store.values[WATCHER_ERROR_KEY] == "table dropped"


def test_triggers_share_one_catalog_client_per_connection(amoro_conn: Any) -> None:
    from airflow_provider_amoro.triggers.table_change import drop_shared_hook, shared_hook

    for i in range(3):
        small_file_table(amoro_conn, f"db.many{i}", files=1)
    drop_shared_hook("amoro_default")

    async def run_all() -> None:
        triggers = [TableChangeTrigger(table=f"db.many{i}", poll_interval=0.05) for i in range(3)]
        tasks = [asyncio.create_task(_collect(t, [])) for t in triggers]
        await asyncio.sleep(0.6)
        for t in tasks:
            t.cancel()

    asyncio.run(run_all())
    hook = shared_hook("amoro_default")
    catalog = hook._catalog
    assert catalog is not None  # built once by the first poll, used by all three triggers since
    asyncio.run(run_all())
    assert shared_hook("amoro_default") is hook and hook._catalog is catalog


def test_an_unchanged_table_is_polled_by_its_metadata_location_only(amoro_conn: Any) -> None:
    """A poll of an unchanged table reads no metadata file: it still works with the file moved away."""
    import os

    table = small_file_table(amoro_conn, "db.cheap", files=2)
    trigger = TableChangeTrigger(table="db.cheap", poll_interval=0.05)
    changes, baseline = trigger._poll(None, True)
    baseline = changes.head_snapshot_id
    changes, _ = trigger._poll(baseline, False)
    assert changes.new == [] and changes.head_snapshot_id == baseline

    metadata_file = table.metadata_location.removeprefix("file://")
    os.rename(metadata_file, metadata_file + ".away")
    try:
        changes, _ = trigger._poll(baseline, False)  # would fail reading the metadata file
        assert changes.new == [] and changes.head_snapshot_id == baseline
    finally:
        os.rename(metadata_file + ".away", metadata_file)

    appended = append_rows(table, [7, 8])
    changes, _ = trigger._poll(baseline, False)
    assert changes.head_snapshot_id == appended
    assert [s.snapshot_id for s in changes.matching] == [appended]
