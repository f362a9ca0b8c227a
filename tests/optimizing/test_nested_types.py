"""List, map, struct-of-list and map-of-struct columns are optimized with deletes (issue #10 item 9).

Every rewrite is compared row for row with the table before it by the independent reader.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from builders import new_table
from pyiceberg.catalog import Catalog
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import (
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    StructType,
)

from airflow_provider_amoro.optimizing import optimize
from airflow_provider_amoro.testing.deletes import add_equality_deletes, add_position_deletes, live_data_files
from airflow_provider_amoro.testing.reader import canonical_rows, read_table

NESTED_SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "tags", ListType(element_id=10, element_type=StringType(), element_required=False)),
    NestedField(
        3,
        "attrs",
        MapType(key_id=11, key_type=StringType(), value_id=12, value_type=LongType(), value_required=False),
    ),
    NestedField(
        4,
        "s",
        StructType(
            NestedField(
                13, "xs", ListType(element_id=14, element_type=IntegerType(), element_required=False)
            ),
            NestedField(15, "name", StringType()),
        ),
    ),
    NestedField(
        5,
        "m",
        MapType(
            key_id=16,
            key_type=StringType(),
            value_id=17,
            value_type=StructType(NestedField(18, "a", IntegerType()), NestedField(19, "b", StringType())),
            value_required=False,
        ),
    ),
)


def _rows(table: Table, ids: list[int]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "id": i,
                "tags": [f"t{i}", None, f"u{i % 3}"] if i % 4 else None,
                "attrs": {"k": i, f"k{i % 2}": None} if i % 5 else {},
                "s": {"xs": list(range(i % 4)), "name": f"n{i}"} if i % 6 else None,
                "m": {"x": {"a": i, "b": f"b{i}"}, "y": None} if i % 7 else None,
            }
            for i in ids
        ],
        schema=table.schema().as_arrow(),
    )


def _table(catalog: Catalog) -> Any:
    table = new_table(catalog, "db.nested", NESTED_SCHEMA)
    for b in range(4):
        table.append(_rows(table, list(range(b * 10, (b + 1) * 10))))
    return catalog.load_table("db.nested")


@pytest.mark.parametrize("deletes", ["none", "position", "equality", "both"])
def test_nested_columns_are_optimized_with_deletes(catalog: Catalog, deletes: str) -> None:
    table = _table(catalog)
    if deletes in ("position", "both"):
        first = sorted(f.file_path for f in live_data_files(table))[0]
        table = add_position_deletes(table, {first: [0, 3]})
    if deletes in ("equality", "both"):
        table = add_equality_deletes(table, pa.table({"id": pa.array([15, 27], pa.int64())}), ["id"])
    table.refresh()
    before = canonical_rows(read_table(table))
    assert len(before) == 40 - 2 * (deletes in ("position", "both")) - 2 * (deletes in ("equality", "both"))

    result = optimize(table, "full")

    assert result.snapshot_id is not None
    table.refresh()
    assert canonical_rows(read_table(table)) == before
    assert len(live_data_files(table)) == 1
