"""The independent reader sees deletes and time travel exactly like pyiceberg does for plain tables."""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.catalog import Catalog

from airflow_provider_amoro.testing.reader import content_hash, read_table


def test_reader_matches_pyiceberg_and_time_travel(catalog: Catalog) -> None:
    catalog.create_namespace("db")
    table = catalog.create_table("db.t", schema=pa.schema([("id", pa.int64()), ("v", pa.string())]))
    table.append(pa.table({"id": [1, 2, 3], "v": ["a", "b", "c"]}))
    first = table.current_snapshot().snapshot_id
    table.append(pa.table({"id": [4], "v": ["d"]}))
    table.delete("id = 2")
    table = catalog.load_table("db.t")
    rows = read_table(table)
    assert sorted(rows.column("id").to_pylist()) == [1, 3, 4]
    assert content_hash(rows) == content_hash(table.scan().to_arrow())
    old = read_table(table, snapshot_id=first)
    assert sorted(old.column("id").to_pylist()) == [1, 2, 3]
    assert content_hash(old) != content_hash(rows)
