"""The discovery cache: what ``amoro__catalog_sync`` found, read back while DAG files are parsed.

One JSON file per catalog connection, ``<cache_dir>/catalog__<conn_id>.json``::

    {
      "version": 1,
      "conn_id": "amoro_default",
      "synced_at": "2026-01-01T00:00:00+00:00",
      "tables": {
        "demo.orders": {
          "properties": {"self-optimizing.group": "default", ...},   # Amoro properties only
          "summary": {"snapshot_id": 1, "total-data-files": "40", ...},
          "cost": 123456789,          # Amoro's optimizing cost in bytes, null when not evaluated
          "health": 72,               # 0-100, null when not evaluated
          "pending": true,            # evaluation found work, null when not evaluated
          "error": null               # why the table could not be read, if it could not
        }
      }
    }

A file (not an Airflow Variable) keeps parsing free of any database or API call: reading 1,000
tables takes a few milliseconds. The file is written atomically (temporary file + rename), so a
parser never sees half a cache. In a deployment with several machines, ``cache_dir`` must be shared
between the workers (which run the sync) and the DAG processor (which parses), e.g. one volume.
This module imports no Airflow.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_amoro.properties import AMORO_PROPERTY_PREFIXES

CACHE_VERSION = 1


@dataclass(frozen=True)
class CachedTable:
    """One table as last seen by the catalog sync.

    Attributes:
        identifier: ``namespace.table``.
        properties: the table's Amoro properties (other properties are not cached).
        summary: small facts from the current snapshot (id, totals from its summary).
        cost: Amoro's optimizing cost in bytes, None when not evaluated.
        health: health score 0-100, None when not evaluated.
        pending: whether evaluation found work, None when not evaluated.
        error: why the table could not be read or evaluated, None when it could.
    """

    identifier: str
    properties: Mapping[str, str] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    cost: int | None = None
    health: int | None = None
    pending: bool | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in the cache file."""
        return {
            "properties": dict(self.properties),
            "summary": dict(self.summary),
            "cost": self.cost,
            "health": self.health,
            "pending": self.pending,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, identifier: str, data: Mapping[str, Any]) -> CachedTable:
        """Rebuild from a cache file entry; tolerant of missing or ill-typed fields."""
        props = data.get("properties") or {}
        cost = data.get("cost")
        health = data.get("health")
        pending = data.get("pending")
        summary = data.get("summary")
        return cls(
            identifier=identifier,
            properties={str(k): str(v) for k, v in props.items()} if isinstance(props, dict) else {},
            summary=summary if isinstance(summary, dict) else {},
            cost=int(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None,
            health=int(health) if isinstance(health, (int, float)) and not isinstance(health, bool) else None,
            pending=pending if isinstance(pending, bool) else None,
            error=str(data["error"]) if data.get("error") else None,
        )


@dataclass(frozen=True)
class CatalogCache:
    """The cached discovery result of one catalog connection.

    Attributes:
        conn_id: the connection id.
        synced_at: when the sync wrote it (None: never synced).
        tables: cached tables by ``namespace.table``.
    """

    conn_id: str
    synced_at: datetime | None = None
    tables: Mapping[str, CachedTable] = field(default_factory=dict)


def amoro_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """Only the Amoro properties (``self-optimizing.*``, ``table-expire.*``, …) of a table."""
    return {k: str(v) for k, v in properties.items() if k.startswith(AMORO_PROPERTY_PREFIXES)}


def cache_file(cache_dir: Path, conn_id: str) -> Path:
    """The cache file of a connection."""
    return Path(cache_dir) / f"catalog__{conn_id}.json"


def read_cache(cache_dir: Path, conn_id: str) -> CatalogCache:
    """Read a connection's cache; an absent or unreadable file reads as an empty cache.

    A corrupt cache must never break parsing (the next sync rewrites it), so JSON errors give an
    empty cache too.
    """
    path = cache_file(cache_dir, conn_id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return CatalogCache(conn_id=conn_id)
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return CatalogCache(conn_id=conn_id)
    tables_raw = data.get("tables")
    tables: dict[str, CachedTable] = {}
    if isinstance(tables_raw, dict):
        for ident, entry in tables_raw.items():
            if isinstance(entry, dict):
                tables[str(ident)] = CachedTable.from_json(str(ident), entry)
    synced_at = None
    if isinstance(data.get("synced_at"), str):
        try:
            synced_at = datetime.fromisoformat(data["synced_at"])
        except ValueError:
            synced_at = None
    return CatalogCache(conn_id=conn_id, synced_at=synced_at, tables=tables)


def write_cache(cache_dir: Path, conn_id: str, tables: Mapping[str, CachedTable]) -> Path:
    """Atomically write a connection's cache and return its path."""
    directory = Path(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": CACHE_VERSION,
        "conn_id": conn_id,
        "synced_at": datetime.now(timezone.utc).isoformat(),
        "tables": {ident: tables[ident].to_json() for ident in sorted(tables)},
    }
    target = cache_file(directory, conn_id)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, separators=(",", ":"), sort_keys=True)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
