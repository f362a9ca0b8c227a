"""Schemas and row builders shared by the test folders.

Tests that need a special schema (nested types, a partition source, timestamps) keep their own,
named for what it is; the plain shapes most tests write live here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.schema import Schema

ID_V_SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string())])
"""``id`` (required long) and ``v`` (optional string): the smallest table with a key and a value."""

ID_CAT_V_SCHEMA = pa.schema([("id", pa.int64()), ("cat", pa.string()), ("v", pa.string())])
"""``id``, ``cat`` (a small set of categories, to partition or delete by) and ``v``, all optional."""

ID_CAT_S_X_SCHEMA = pa.schema(
    [("id", pa.int64()), ("cat", pa.string()), ("s", pa.string()), ("x", pa.float64())]
)
"""``id``, ``cat``, a string ``s`` and a double ``x``, all optional: rows wide enough for sized files."""


def id_v_iceberg_schema() -> Schema:
    """:data:`ID_V_SCHEMA` as a pyiceberg Schema with field ids 1 (id) and 2 (v), for partition specs."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField, StringType

    return Schema(NestedField(1, "id", LongType(), required=True), NestedField(2, "v", StringType()))


def id_v_rows(ids: Iterable[int], tag: str = "r", *, schema: pa.Schema = ID_V_SCHEMA) -> pa.Table:
    """Rows ``id, v`` for the given ids, with ``v = f"{tag}{id}"``."""
    ids = list(ids)
    return pa.table({"id": pa.array(ids, pa.int64()), "v": [f"{tag}{i}" for i in ids]}, schema=schema)


def id_cat_v_rows(ids: Iterable[int], tag: str = "v", *, categories: int = 3) -> pa.Table:
    """Rows of :data:`ID_CAT_V_SCHEMA`: ``cat = f"c{id % categories}"``, ``v = f"{tag}{id}"``."""
    ids = list(ids)
    return pa.table(
        {"id": ids, "cat": [f"c{i % categories}" for i in ids], "v": [f"{tag}{i}" for i in ids]},
        schema=ID_CAT_V_SCHEMA,
    )


def ensure_namespace(catalog: Catalog, identifier: str) -> None:
    """Create the namespace of the table ``identifier`` (``ns.table``) when it is missing."""
    catalog.create_namespace_if_not_exists(identifier.rsplit(".", 1)[0])
