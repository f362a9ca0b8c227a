"""An independent reader of Iceberg tables: iceberg-rust (``pyiceberg-core``) through DataFusion.

The engine reads and writes with pyiceberg and pyarrow; tests check its results with this reader,
which shares no code with it and applies position and equality deletes itself.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa


def _metadata_url(location: str) -> str:
    if "://" in location:
        return location
    return "file://" + location


def read_table(table: Any, *, snapshot_id: int | None = None) -> pa.Table:
    """Read all live rows of ``table`` (a pyiceberg ``Table``) with iceberg-rust.

    Args:
        table: a pyiceberg table; its current metadata location is read, so load or refresh it first.
        snapshot_id: read this snapshot instead of the current one (time travel).

    Returns:
        The rows as a pyarrow table, in no particular order.
    """
    import datafusion
    from pyiceberg_core.datafusion import IcebergDataFusionTable

    props = {k: v for k, v in table.io.properties.items() if isinstance(v, str)}
    ident = list(table.name())
    provider = IcebergDataFusionTable(ident, _metadata_url(table.metadata_location), props)
    ctx = datafusion.SessionContext()
    ctx.register_table("t", provider)
    if snapshot_id is None:
        return ctx.sql("SELECT * FROM t").to_arrow_table()
    # iceberg-rust reads the current snapshot; for time travel, reread metadata pinned at the snapshot.
    return _read_snapshot(table, snapshot_id)


def _read_snapshot(table: Any, snapshot_id: int) -> pa.Table:
    """Read ``snapshot_id`` by writing a temporary metadata file whose main branch points at it."""
    import json
    import tempfile
    from pathlib import Path

    import datafusion
    from pyiceberg_core.datafusion import IcebergDataFusionTable

    meta = json.loads(table.metadata.model_dump_json(by_alias=True, exclude_none=True))
    meta["current-snapshot-id"] = snapshot_id
    meta["refs"] = {"main": {"snapshot-id": snapshot_id, "type": "branch"}}
    schema_id = next(
        (s.get("schema-id") for s in meta.get("snapshots", []) if s["snapshot-id"] == snapshot_id), None
    )
    if schema_id is not None:
        meta["current-schema-id"] = schema_id
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pinned.metadata.json"
        path.write_text(json.dumps(meta))
        props = {k: v for k, v in table.io.properties.items() if isinstance(v, str)}
        provider = IcebergDataFusionTable(list(table.name()), path.as_uri(), props)
        ctx = datafusion.SessionContext()
        ctx.register_table("t", provider)
        return ctx.sql("SELECT * FROM t").to_arrow_table()


def canonical_rows(data: pa.Table) -> list[tuple[Any, ...]]:
    """Rows of ``data`` as sorted tuples (columns in name order), for exact comparisons."""
    names = sorted(data.column_names)
    cols = [data.column(n).to_pylist() for n in names]
    rows = list(zip(*cols, strict=True)) if cols else []
    return sorted(rows, key=repr)


def content_hash(data: pa.Table) -> str:
    """An order-independent SHA-256 over all rows of ``data`` (multiset semantics)."""
    digest = hashlib.sha256()
    digest.update(repr(sorted(data.column_names)).encode())
    for row in canonical_rows(data):
        digest.update(repr(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()
