"""Benchmark 8: 1,000 table watchers in one triggerer process: CPU, event-loop lag, event latency.

A triggerer runs every trigger as a coroutine of one asyncio event loop. This benchmark runs 1,000
``TableChangeTrigger`` watchers (one per table, 1,000 tables of one SQLite catalog reached through
an ``amoro`` connection) in one event loop of one process, as the triggerer does, for a measured
window, while a writer commits to a few tables. It reports:

- CPU: the process's CPU seconds over the window divided by its length (1.0 = one core busy);
- event-loop lag: the largest and the 99th-percentile delay of a 20 ms ticker (a blocked loop delays
  every trigger of the triggerer);
- event latency: from a writer's commit to the watcher's event (bounded below by the poll
  interval);
- catalog clients built: all watchers share one per connection (``shared_hook``).

Not measured: the triggerer's own bookkeeping (heartbeats, DB sync of events), which does not
depend on what the triggers do.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import WORK

WATCHERS = 1000
POLL_S = 10.0
WINDOW_S = 60.0
COMMITS = 10


def _setup(root: Path, n: int) -> Any:
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField

    shutil.rmtree(root, ignore_errors=True)
    (root / "warehouse").mkdir(parents=True)
    uri = f"sqlite:///{root / 'catalog.db'}"
    catalog = SqlCatalog("amoro_default", uri=uri, warehouse=(root / "warehouse").as_uri())
    catalog.create_namespace("w")
    schema = Schema(NestedField(1, "id", LongType(), required=False))
    for i in range(n):
        table = catalog.create_table(f"w.t{i:04d}", schema=schema)
        if i < COMMITS:
            table.append(pa.table({"id": [i]}, schema=schema.as_arrow()))
    os.environ["AIRFLOW_CONN_AMORO_DEFAULT"] = json.dumps(
        {
            "conn_type": "amoro",
            "extra": {
                "catalog_type": "sql",
                "catalog_name": "amoro_default",
                "uri": uri,
                "warehouse": (root / "warehouse").as_uri(),
            },
        }
    )
    return catalog


async def _scenario(catalog: Any, n: int) -> dict[str, Any]:
    import pyarrow as pa

    from airflow_provider_amoro.triggers import table_change
    from airflow_provider_amoro.triggers.table_change import TableChangeTrigger

    built = 0
    from airflow_provider_amoro.hooks import catalog as hook_module

    real_get_catalog = hook_module.AmoroCatalogHook.get_catalog

    def counting_get_catalog(self: Any) -> Any:
        nonlocal built
        if self._catalog is None:
            built += 1
        return real_get_catalog(self)

    hook_module.AmoroCatalogHook.get_catalog = counting_get_catalog  # type: ignore[method-assign]
    table_change.drop_shared_hook("amoro_default")
    events: dict[str, float] = {}

    async def watch(trigger: TableChangeTrigger) -> None:
        async for event in trigger.run():
            events.setdefault(event.payload["table"], time.monotonic())

    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        step = 0.02
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(step)
            now = time.monotonic()
            lags.append(max(0.0, now - last - step))
            last = now

    triggers = [TableChangeTrigger(table=f"w.t{i:04d}", poll_interval=POLL_S) for i in range(n)]
    tasks = [asyncio.create_task(watch(t)) for t in triggers]
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(POLL_S * 2)  # every watcher has taken its baseline
    lags.clear()
    cpu0, wall0 = time.process_time(), time.monotonic()
    committed: dict[str, float] = {}
    for i in range(COMMITS):
        name = f"w.t{i:04d}"
        table = catalog.load_table(name)
        await asyncio.to_thread(table.append, pa.table({"id": [1000 + i]}, schema=table.schema().as_arrow()))
        committed[name] = time.monotonic()
        await asyncio.sleep((WINDOW_S - POLL_S * 2) / COMMITS)
    remaining = WINDOW_S - (time.monotonic() - wall0)
    await asyncio.sleep(max(remaining, POLL_S * 1.5))
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    stop.set()
    for t in tasks:
        t.cancel()
    await tick
    await asyncio.gather(*tasks, return_exceptions=True)
    hook_module.AmoroCatalogHook.get_catalog = real_get_catalog  # type: ignore[method-assign]
    latencies = [events[n] - committed[n] for n in committed if n in events]
    lags_sorted = sorted(lags)
    return {
        "watchers": n,
        "poll_interval_s": POLL_S,
        "window_s": round(wall, 1),
        "cpu_cores": round(cpu / wall, 3),
        "loop_lag_max_s": round(max(lags_sorted, default=0.0), 3),
        "loop_lag_p99_s": round(lags_sorted[int(len(lags_sorted) * 0.99)] if lags_sorted else 0.0, 3),
        "events": len(latencies),
        "commits": len(committed),
        "event_latency_median_s": round(statistics.median(latencies), 2) if latencies else None,
        "event_latency_max_s": round(max(latencies), 2) if latencies else None,
        "catalog_clients_built": built,
        "polls_per_second": round(n / POLL_S, 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Run benchmark 8; return its JSON-safe result."""
    n = 200 if quick else WATCHERS
    catalog = _setup(WORK / "watchers", n)
    result = asyncio.run(_scenario(catalog, n))
    print(
        f"  {n} watchers: {result['cpu_cores']:.2f} cores, loop lag max {result['loop_lag_max_s']} s, "
        f"event latency median {result['event_latency_median_s']} s, "
        f"{result['catalog_clients_built']} catalog client(s)",
        flush=True,
    )
    return {"name": "watchers", "quick": quick, "result": result}


def summarize(result: dict[str, Any]) -> list[str]:
    """Markdown lines for results.md."""
    r = result["result"]
    cmd = "python -m benchmarks.run --only watchers" + (" --quick" if result.get("quick") else "")
    return [
        f"Reproduce: `{cmd}`.",
        "",
        "| watchers | poll interval | window | CPU (cores) | loop lag max / p99 | commits → events | "
        "event latency median / max | catalog clients built |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['watchers']:,} | {r['poll_interval_s']:.0f} s | {r['window_s']:.0f} s | {r['cpu_cores']:.2f} "
        f"| {r['loop_lag_max_s']} s / {r['loop_lag_p99_s']} s | {r['commits']} → {r['events']} "
        f"| {r['event_latency_median_s']} s / {r['event_latency_max_s']} s | {r['catalog_clients_built']} |",
        "",
        f"{r['polls_per_second']} table loads per second (one per watcher per poll interval) on a SQLite "
        "catalog; the latency is bounded below by the poll interval (a commit waits for the next poll). "
        "Each poll loads the table in a worker thread (`asyncio.to_thread`), so the loop keeps ticking.",
    ]


def plot(result: dict[str, Any], folder: Path) -> list[str]:
    """No plot for this one."""
    return []
