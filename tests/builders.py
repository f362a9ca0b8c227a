"""Schemas and row builders shared by the test folders.

Tests that need a special schema (nested types, a partition source, timestamps) keep their own,
named for what it is; the plain shapes most tests write live here once.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import BucketTransform, DayTransform, IdentityTransform
from pyiceberg.types import DateType, LongType, NestedField, StringType

ID_V_SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string())])
"""``id`` (required long) and ``v`` (optional string): the smallest table with a key and a value."""

ID_CAT_V_SCHEMA = pa.schema([("id", pa.int64()), ("cat", pa.string()), ("v", pa.string())])
"""``id``, ``cat`` (a small set of categories, to partition or delete by) and ``v``, all optional."""

ID_CAT_S_X_SCHEMA = pa.schema(
    [("id", pa.int64()), ("cat", pa.string()), ("s", pa.string()), ("x", pa.float64())]
)
"""``id``, ``cat``, a string ``s`` and a double ``x``, all optional: rows wide enough for sized files."""


WIDE_SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "v", StringType()),
    NestedField(3, "cat", StringType()),
    NestedField(4, "d", DateType()),
)
"""A schema with columns for identity (``cat``), bucket (``id``) and day (``d``) partitioning."""

PARTITION_FIELDS = {
    "identity": PartitionField(source_id=3, field_id=1000, transform=IdentityTransform(), name="cat"),
    "bucket": PartitionField(source_id=1, field_id=1000, transform=BucketTransform(3), name="id_bucket"),
    "day": PartitionField(source_id=4, field_id=1000, transform=DayTransform(), name="d_day"),
}
"""Partition fields over :data:`WIDE_SCHEMA`, by name."""


def id_v_iceberg_schema() -> Schema:
    """:data:`ID_V_SCHEMA` as a pyiceberg Schema with field ids 1 (id) and 2 (v), for partition specs."""
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


def new_table(
    catalog: Catalog,
    identifier: str,
    schema: Schema | pa.Schema,
    *,
    properties: dict[str, str] | None = None,
    identity: Iterable[str] = (),
) -> Table:
    """Create ``identifier`` (and its namespace when missing), identity-partitioned by ``identity``."""
    catalog.create_namespace_if_not_exists(identifier.rsplit(".", 1)[0])
    table = catalog.create_table(identifier, schema=schema, properties=properties or {})
    columns = list(identity)
    if columns:
        with table.update_spec() as spec:
            for column in columns:
                spec.add_identity(column)
    return table
