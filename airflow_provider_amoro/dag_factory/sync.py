"""Discovery: list a catalog's managed tables and cache them with their properties and cost.

Runs only inside the ``amoro__catalog_sync`` DAG (or ``python -m airflow_provider_amoro.dag_factory
sync``), never while a DAG file is parsed. For every table the selectors pick it stores the Amoro
properties, a few snapshot-summary totals and, when ``catalog_sync.evaluate`` is on, the optimizing
cost, health score and whether work is pending, computed by the engine's evaluation with the
configured overrides applied. A table that cannot be read is cached with its error (and still gets
its DAG, whose evaluate task will report the problem); one broken table never stops the sync.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from airflow_provider_amoro.dag_factory.cache import CachedTable, amoro_properties, read_cache, write_cache
from airflow_provider_amoro.dag_factory.config import FactoryConfig, glob_match
from airflow_provider_amoro.dag_factory.errors import ConfigError
from airflow_provider_amoro.formats import TableFormat, open_table
from airflow_provider_amoro.properties import (
    MIN_TARGET_SIZE_RATIO,
    MIN_TARGET_SIZE_RATIO_DEFAULT,
    TARGET_SIZE,
    TARGET_SIZE_DEFAULT,
)

log = logging.getLogger(__name__)

SUMMARY_KEYS = (
    "total-data-files",
    "total-delete-files",
    "total-records",
    "total-files-size",
    "total-position-deletes",
    "total-equality-deletes",
)
_MIB = 1024 * 1024


def table_summary(table: TableFormat) -> dict[str, Any]:
    """Snapshot id, timestamp, operation and totals of the table's current snapshot (metadata only)."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return {"snapshot_id": None}
    out: dict[str, Any] = {
        "snapshot_id": snapshot.snapshot_id,
        "timestamp_ms": snapshot.timestamp_ms,
        "operation": snapshot.operation,
    }
    for key in SUMMARY_KEYS:
        value = snapshot.summary.get(key)
        if value is not None:
            out[key] = value
    return out


def estimate_cost(summary: Mapping[str, Any], properties: Mapping[str, str]) -> int:
    """A cheap stand-in for Amoro's cost when the table is not evaluated (metadata only).

    Uses the snapshot totals: data files smaller on average than the minimum target size count
    double (they would be rewritten), plus delete bytes' share and 4 MiB per file, as in Amoro's
    formula. It only orders tables; the per-table evaluate task decides what actually happens.
    """

    def num(key: str) -> int:
        try:
            return int(summary.get(key) or 0)
        except (TypeError, ValueError):
            return 0

    files = num("total-data-files")
    deletes = num("total-delete-files")
    size = num("total-files-size")
    if files == 0 and deletes == 0:
        return 0
    try:
        target = int(properties.get(TARGET_SIZE, TARGET_SIZE_DEFAULT))
        ratio = float(properties.get(MIN_TARGET_SIZE_RATIO, MIN_TARGET_SIZE_RATIO_DEFAULT))
    except ValueError:
        target, ratio = TARGET_SIZE_DEFAULT, MIN_TARGET_SIZE_RATIO_DEFAULT
    avg = size / max(1, files + deletes)
    small = size * 2 if avg <= target * ratio and files > 1 else 0
    return int(small + (files + deletes) * 4 * _MIB) if small or deletes else 0


def _evaluate(table: Any, overrides: Mapping[str, str]) -> tuple[int, int, bool]:
    """Cost, health and pending from the engine's evaluation, with the configured overrides."""
    from airflow_provider_amoro.optimizing.config import OptimizingConfig
    from airflow_provider_amoro.optimizing.evaluate import evaluate

    config = OptimizingConfig.from_properties({**table.properties, **overrides}, schema=table.schema())
    result = evaluate(table, config=config)
    return int(result.cost), int(result.health_score), bool(result.needs_optimizing)


def _inspect(
    config: FactoryConfig, conn_id: str, hook: Any, ident: str, old: CachedTable | None
) -> tuple[CachedTable, bool]:
    """Inspect one table; returns its entry and whether it was re-evaluated (False: reused)."""
    table = hook.load_table(ident)
    fmt = open_table(table)
    location = fmt.change_token()
    uuid = fmt.uuid
    if (
        old is not None
        and old.error is None
        and location
        and old.metadata_location == location
        and old.uuid == uuid
    ):
        return old, False  # nothing committed and no property changed since the last sync
    props = amoro_properties(fmt.properties())
    summary = table_summary(fmt)
    try:
        settings = config.resolve(conn_id, ident, table_properties=props)
    except ConfigError as exc:
        # keep the properties that cause it: the DAG factory then skips the table with the same
        # message, and the Lakehouse page shows it
        entry = CachedTable(
            ident, props, summary, error=str(exc)[:500], metadata_location=location, uuid=uuid
        )
        return entry, True
    overrides = {
        **{k: v for k, v in settings.property_defaults.items() if k not in props},
        **settings.property_overrides,
    }
    cost: int | None
    health: int | None = None
    pending: bool | None = None
    if config.catalog_sync.evaluate:
        cost, health, pending = _evaluate(table, overrides)
    else:
        cost = estimate_cost(summary, {**props, **overrides})
    entry = CachedTable(
        identifier=ident,
        properties=props,
        summary=summary,
        cost=cost,
        health=health,
        pending=pending,
        metadata_location=location,
        uuid=uuid,
    )
    return entry, True


def _mark_renames(tables: dict[str, CachedTable], previous: Mapping[str, CachedTable]) -> None:
    """Record ``renamed_from`` on a new name whose UUID belonged to a name that is gone (a rename).

    An earlier rename stays recorded while the entry lives, so the table DAG keeps adopting the
    state recorded under the former name until it has done so.
    """
    from dataclasses import replace

    gone = {t.uuid: name for name, t in previous.items() if name not in tables and t.uuid}
    for name, entry in list(tables.items()):
        old = previous.get(name)
        if entry.renamed_from is None and old is not None and old.renamed_from:
            tables[name] = entry = replace(entry, renamed_from=old.renamed_from)
        if name not in previous and entry.uuid and entry.uuid in gone:
            tables[name] = replace(entry, renamed_from=gone[entry.uuid])
            log.info(
                "catalog sync: %s was renamed to %s (same table UUID %s)", gone[entry.uuid], name, entry.uuid
            )


WRITE_EVERY_S = 30.0
"""While a sync runs, the table list is rewritten at most this often with what is done so far."""


def unmatched_includes(include: Sequence[str], listed: Sequence[str]) -> list[str]:
    """The ``include`` globs of a catalog that match none of the listed tables (a likely typo)."""
    return [p for p in include if not any(glob_match(ident, p) for ident in listed)]


def _empty_hint(hook: Any) -> str | None:
    """For an empty catalog: the hook's hint naming the catalog names that do hold tables."""
    hint_of = getattr(hook, "empty_catalog_hint", None)
    try:
        return hint_of() if hint_of is not None else None
    except Exception:  # noqa: BLE001 - a hint only
        return None


def sync_catalog(config: FactoryConfig, conn_id: str, *, hook: Any = None) -> dict[str, Any]:
    """List, inspect and cache the managed tables of one catalog connection.

    Tables are inspected in parallel (``catalog_sync.parallelism`` threads) and incrementally: a
    table whose metadata location is the one recorded last time (nothing committed, no property
    changed) keeps its entry without being evaluated again. The table list is written as the work
    goes (at most every 30 s) and at the end; when ``catalog_sync.time_budget`` runs out, the
    tables not reached keep their previous entries and the next sync goes on with them. One broken
    table never stops the sync: it is recorded with its error.

    Args:
        config: the factory configuration.
        conn_id: a connection id configured under ``catalogs``.
        hook: an ``AmoroCatalogHook`` to use (default: one for ``conn_id``).

    Returns:
        Small metrics: tables found, selected, re-evaluated, reused, failed, left for the next
        sync, the table list's location and the duration.
    """
    if hook is None:
        from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

        hook = AmoroCatalogHook(amoro_conn_id=conn_id)
    started = time.monotonic()
    catalog = config.catalogs[conn_id]
    listed = hook.list_tables("*")
    selected = [ident for ident in listed if catalog.selects(ident)]
    unmatched = unmatched_includes(catalog.include, listed)
    hint = _empty_hint(hook) if not listed else None
    for pattern in unmatched:
        log.warning(
            "catalog sync %s: include %r matches none of the %d table(s) listed%s",
            conn_id,
            pattern,
            len(listed),
            f"; {hint}" if hint else "",
        )
    run = _SyncRun(config, conn_id, hook, selected, started)
    run.inspect_all()
    _mark_renames(run.tables, run.previous.tables)
    path = write_cache(config.cache_dir, conn_id, run.tables)
    added = sorted(set(run.tables) - set(run.previous.tables))
    removed = sorted(set(run.previous.tables) - set(run.tables))
    metrics = {
        "conn_id": conn_id,
        "listed": len(listed),
        "selected": len(selected),
        "evaluated": run.counts["evaluated"],
        "reused": run.counts["reused"],
        "failed": run.counts["failed"],
        "left_for_next_sync": len(selected) - len(run.done),
        "unmatched_includes": unmatched,
        "hint": hint,
        "added": added[:100],
        "removed": removed[:100],
        "cache": str(path),
        "duration_s": round(time.monotonic() - started, 3),
    }
    log.info("catalog sync %s: %s", conn_id, metrics)
    return metrics


class _SyncRun:
    """One catalog sync's inspection of its selected tables: parallel, bounded in time, written as it goes."""

    def __init__(
        self, config: FactoryConfig, conn_id: str, hook: Any, selected: list[str], started: float
    ) -> None:
        self.config = config
        self.conn_id = conn_id
        self.hook = hook
        self.selected = selected
        self.started = started
        budget = config.catalog_sync.time_budget
        self.budget = budget
        self.deadline = started + budget.total_seconds() if budget is not None else None
        self.previous = read_cache(config.cache_dir, conn_id)
        # unreached tables keep their previous entry; dropped ones leave
        self.tables: dict[str, CachedTable] = {
            i: self.previous.tables[i] for i in selected if i in self.previous.tables
        }
        self.done: set[str] = set()
        self.counts = {"evaluated": 0, "reused": 0, "failed": 0}

    def record(self, ident: str, future: Future[tuple[CachedTable, bool]]) -> None:
        """Keep one table's result; a failed inspection keeps the previous entry with the error."""
        self.done.add(ident)
        try:
            entry, evaluated = future.result()
        except Exception as exc:  # noqa: BLE001 - one broken table must not stop discovery
            self.counts["failed"] += 1
            log.warning("catalog sync: cannot inspect %s.%s: %s", self.conn_id, ident, exc)
            old = self.previous.tables.get(ident)
            self.tables[ident] = CachedTable(
                identifier=ident,
                properties=old.properties if old else {},
                summary=old.summary if old else {},
                cost=old.cost if old else None,
                error=f"{type(exc).__name__}: {exc}"[:500],
                uuid=old.uuid if old else None,
            )
            return
        self.counts["evaluated" if evaluated else "reused"] += 1
        if entry.error:
            self.counts["failed"] += 1
            log.warning("catalog sync: %s.%s: %s", self.conn_id, ident, entry.error)
        self.tables[ident] = entry

    def inspect_all(self) -> None:
        """Inspect the selected tables in parallel until done or out of time."""
        parallelism = self.config.catalog_sync.parallelism
        pending = list(self.selected)
        last_write = self.started
        with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="amoro-sync") as pool:
            running: dict[Future[tuple[CachedTable, bool]], str] = {}
            while pending or running:
                out_of_time = self.deadline is not None and time.monotonic() >= self.deadline
                while pending and not out_of_time and len(running) < 2 * parallelism:
                    ident = pending.pop(0)
                    old = self.previous.tables.get(ident)
                    running[pool.submit(_inspect, self.config, self.conn_id, self.hook, ident, old)] = ident
                if not running:
                    break
                timeout = None if self.deadline is None else max(0.1, self.deadline - time.monotonic())
                finished, _ = wait(running, timeout=min(timeout or 5.0, 5.0), return_when=FIRST_COMPLETED)
                for future in finished:
                    self.record(running.pop(future), future)
                if time.monotonic() - last_write >= WRITE_EVERY_S:
                    write_cache(self.config.cache_dir, self.conn_id, self.tables)
                    last_write = time.monotonic()
                    log.info(
                        "catalog sync %s: %d of %d tables done, table list written",
                        self.conn_id,
                        len(self.done),
                        len(self.selected),
                    )
                if out_of_time and pending:
                    log.warning(
                        "catalog sync %s: time budget of %s used up; %d table(s) keep their previous "
                        "entry until the next sync",
                        self.conn_id,
                        self.budget,
                        len(pending),
                    )
                    pending = []
