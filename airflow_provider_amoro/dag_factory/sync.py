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
from typing import Any

from airflow_provider_amoro.dag_factory.cache import CachedTable, amoro_properties, read_cache, write_cache
from airflow_provider_amoro.dag_factory.config import FactoryConfig, glob_match
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


def table_summary(table: Any) -> dict[str, Any]:
    """Snapshot id, timestamp, operation and totals of the table's current snapshot."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return {"snapshot_id": None}
    summary = snapshot.summary
    out: dict[str, Any] = {
        "snapshot_id": snapshot.snapshot_id,
        "timestamp_ms": snapshot.timestamp_ms,
        "operation": str(summary.operation.value) if summary is not None else None,
    }
    if summary is not None:
        for key in SUMMARY_KEYS:
            value = summary.get(key)
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

    Args:
        config: the factory configuration.
        conn_id: a connection id configured under ``catalogs``.
        hook: an ``AmoroCatalogHook`` to use (default: one for ``conn_id``).

    Returns:
        Small metrics: tables found, selected, failed, cache path and duration.
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
    previous = read_cache(config.cache_dir, conn_id)
    tables: dict[str, CachedTable] = {}
    failed = 0
    for ident in selected:
        try:
            table = hook.load_table(ident)
            props = amoro_properties(table.properties)
            summary = table_summary(table)
            settings = config.resolve(conn_id, ident, table_properties=props)
            cost: int | None = None
            health: int | None = None
            pending: bool | None = None
            if config.catalog_sync.evaluate:
                cost, health, pending = _evaluate(table, settings.property_overrides)
            else:
                cost = estimate_cost(summary, {**props, **settings.property_overrides})
            tables[ident] = CachedTable(
                identifier=ident, properties=props, summary=summary, cost=cost, health=health, pending=pending
            )
        except Exception as exc:  # noqa: BLE001 - one broken table must not stop discovery
            failed += 1
            log.warning("catalog sync: cannot inspect %s.%s: %s", conn_id, ident, exc)
            old = previous.tables.get(ident)
            tables[ident] = CachedTable(
                identifier=ident,
                properties=old.properties if old else {},
                summary=old.summary if old else {},
                cost=old.cost if old else None,
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
    path = write_cache(config.cache_dir, conn_id, tables)
    added = sorted(set(tables) - set(previous.tables))
    removed = sorted(set(previous.tables) - set(tables))
    metrics = {
        "conn_id": conn_id,
        "listed": len(listed),
        "selected": len(selected),
        "failed": failed,
        "unmatched_includes": unmatched,
        "hint": hint,
        "added": added[:100],
        "removed": removed[:100],
        "cache": str(path),
        "duration_s": round(time.monotonic() - started, 3),
    }
    log.info("catalog sync %s: %s", conn_id, metrics)
    return metrics
