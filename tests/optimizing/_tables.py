"""Helpers building real small Iceberg tables for the planner tests (evaluate, plan, scan)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import BucketTransform, DayTransform, IdentityTransform
from pyiceberg.types import DateType, LongType, NestedField, StringType

PLANNER_SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "cat", StringType(), required=False),
    NestedField(3, "day", DateType(), required=False),
    NestedField(4, "payload", StringType(), required=False),
)
PLANNER_ARROW_SCHEMA = pa.schema(
    [("id", pa.int64()), ("cat", pa.string()), ("day", pa.date32()), ("payload", pa.string())]
)

SPECS = {
    "unpartitioned": PartitionSpec(),
    "identity": PartitionSpec(PartitionField(2, 1000, IdentityTransform(), "cat")),
    "bucket": PartitionSpec(PartitionField(1, 1000, BucketTransform(4), "id_bucket")),
    "day": PartitionSpec(PartitionField(3, 1000, DayTransform(), "day_day")),
}


def rows(start: int, n: int, *, cats: tuple[str, ...] = ("a",), days: int = 1, payload: int = 20) -> pa.Table:
    """``n`` rows with ids from ``start``; ``cat`` cycles over ``cats``, ``day`` over ``days`` days."""
    import datetime as dt

    ids = list(range(start, start + n))
    return pa.table(
        {
            "id": ids,
            "cat": [cats[i % len(cats)] for i in ids],
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i % days) for i in ids],
            "payload": [f"{i:08d}" + "x" * payload for i in ids],
        },
        schema=PLANNER_ARROW_SCHEMA,
    )


def make_table(
    catalog: Catalog,
    name: str = "db.t",
    *,
    spec: str = "unpartitioned",
    properties: dict[str, str] | None = None,
    format_version: int = 2,
) -> Table:
    """Create a table in ``catalog`` (namespace created when missing)."""
    ns = name.rsplit(".", 1)[0]
    if (ns,) not in catalog.list_namespaces():
        catalog.create_namespace(ns)
    props = {"format-version": str(format_version), **(properties or {})}
    return catalog.create_table(name, schema=PLANNER_SCHEMA, partition_spec=SPECS[spec], properties=props)


def append_many(table: Table, count: int, n: int = 10, **kwargs: Any) -> Table:
    """``count`` small appends of ``n`` rows each (one file per partition touched, per append)."""
    for i in range(count):
        table.append(rows(i * n, n, **kwargs))
    return table
