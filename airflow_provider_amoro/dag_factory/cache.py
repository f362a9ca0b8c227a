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
tables takes a few milliseconds.

**The table list must be readable by every component that parses the DAG file**: the DAG processor,
and every worker (a worker parses the file again to find the task it runs). ``cache_dir`` is
therefore a location given by path or URL and opened with fsspec: ``s3://bucket/amoro/tables``,
``gs://…``, ``abfs://…`` (object storage: one atomic PUT per write, read with one GET per parse)
or a path on a shared file system (NFS, a Kubernetes ``ReadWriteMany`` volume, a Docker volume).
The local default (``$AIRFLOW_HOME/amoro/cache``) suits only single-machine setups. A local file
is written atomically (temporary file + rename), so a parser never sees half a table list.
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

Location = str | os.PathLike[str]
"""A table-list location: a local path, or a URL fsspec understands (``s3://…``, ``file://…``)."""

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
        metadata_location: the table's metadata file when last inspected (the sync re-reads a table
            only when it changed).
        uuid: the table's UUID (``table-uuid``), None when unknown.
        renamed_from: the name this table (same UUID) had before a rename, when the sync saw one.
    """

    identifier: str
    properties: Mapping[str, str] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    cost: int | None = None
    health: int | None = None
    pending: bool | None = None
    error: str | None = None
    metadata_location: str | None = None
    uuid: str | None = None
    renamed_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in the cache file."""
        return {
            "properties": dict(self.properties),
            "summary": dict(self.summary),
            "cost": self.cost,
            "health": self.health,
            "pending": self.pending,
            "error": self.error,
            "metadata_location": self.metadata_location,
            "uuid": self.uuid,
            "renamed_from": self.renamed_from,
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
            metadata_location=str(data["metadata_location"]) if data.get("metadata_location") else None,
            uuid=str(data["uuid"]) if data.get("uuid") else None,
            renamed_from=str(data["renamed_from"]) if data.get("renamed_from") else None,
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


def is_url(location: Location) -> bool:
    """Whether a table-list location is a URL (``scheme://…``) rather than a local path."""
    return "://" in str(location)


CACHE_FILE_PREFIX, CACHE_FILE_SUFFIX = "catalog__", ".json"
"""A connection's table list is ``catalog__<conn_id>.json``."""


def cache_file(cache_dir: Location, conn_id: str) -> str:
    """The table-list file of a connection (a path, or a URL when ``cache_dir`` is one)."""
    name = f"{CACHE_FILE_PREFIX}{conn_id}{CACHE_FILE_SUFFIX}"
    if is_url(cache_dir):
        return f"{str(cache_dir).rstrip('/')}/{name}"
    return str(Path(cache_dir) / name)


def _filesystem(location: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(location)
    return fs, path


def read_text(location: Location) -> str | None:
    """The text of a table-list file at a path or URL; None when it does not exist or is unreadable."""
    text = str(location)
    if not is_url(text) or text.startswith("file://"):
        local = text[len("file://") :] if text.startswith("file://") else text
        try:
            return Path(local).read_text(encoding="utf-8")
        except OSError:
            return None
    try:
        fs, path = _filesystem(text)
        data = fs.cat_file(path)
    except (OSError, ValueError):
        return None
    return data.decode("utf-8") if isinstance(data, bytes) else str(data)


def write_text(location: Location, text: str) -> None:
    """Write a table-list file atomically: temporary file + rename locally, one PUT on object storage."""
    target = str(location)
    if not is_url(target) or target.startswith("file://"):
        path = Path(target[len("file://") :] if target.startswith("file://") else target)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    fs, path_in_fs = _filesystem(target)
    fs.pipe_file(path_in_fs, text.encode("utf-8"))


def cache_conn_id(file_name: str) -> str | None:
    """The connection id of a table-list file name (``catalog__<conn_id>.json``), None for other files."""
    name = file_name.rstrip("/").rsplit("/", 1)[-1]
    if not (name.startswith(CACHE_FILE_PREFIX) and name.endswith(CACHE_FILE_SUFFIX)):
        return None
    return name[len(CACHE_FILE_PREFIX) : -len(CACHE_FILE_SUFFIX)] or None


def read_cache(cache_dir: Location, conn_id: str) -> CatalogCache:
    """Read a connection's table list; an absent or unreadable file reads as an empty list.

    A corrupt file must never break parsing (the next sync rewrites it), so JSON errors give an
    empty list too.
    """
    raw = read_text(cache_file(cache_dir, conn_id))
    parsed = parse_cache(raw, conn_id) if raw is not None else None
    return parsed if parsed is not None else CatalogCache(conn_id=conn_id)


def parse_cache(raw: str | bytes, conn_id: str) -> CatalogCache | None:
    """A connection's table list from the text of its file; None when it is not valid JSON of
    this cache's version (the caller decides what an unreadable file means)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return None
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


def write_cache(cache_dir: Location, conn_id: str, tables: Mapping[str, CachedTable]) -> str:
    """Atomically write a connection's table list and return its path or URL."""
    payload = {
        "version": CACHE_VERSION,
        "conn_id": conn_id,
        "synced_at": datetime.now(timezone.utc).isoformat(),
        "tables": {ident: tables[ident].to_json() for ident in sorted(tables)},
    }
    target = cache_file(cache_dir, conn_id)
    write_text(target, json.dumps(payload, separators=(",", ":"), sort_keys=True))
    return target
