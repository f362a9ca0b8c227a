"""Dangling delete files: removed in a REPLACE commit, rows unchanged; expiry then deletes them."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from builders import ID_V_SCHEMA, id_v_iceberg_schema, id_v_rows, new_table
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform

from airflow_provider_amoro.maintenance import clean_dangling_delete_files, expire_snapshots
from airflow_provider_amoro.maintenance.dangling import find_dangling_delete_files
from airflow_provider_amoro.testing.deletes import (
    add_position_deletes,
    live_data_files,
    upsert_with_equality_deletes,
)
from airflow_provider_amoro.testing.reader import content_hash, read_table

from .helpers import norm, storage_files


def _file_with(table: Table, row_id: int) -> str:
    return next(f.file_path for f in live_data_files(table) if f.lower_bounds and _holds(f, row_id))


def _holds(data_file: Any, row_id: int) -> bool:
    from pyiceberg.conversions import from_bytes
    from pyiceberg.types import LongType

    low = from_bytes(LongType(), data_file.lower_bounds[1])
    high = from_bytes(LongType(), data_file.upper_bounds[1])
    return bool(low <= row_id <= high)


def test_dangling_position_and_equality_deletes(lake: Catalog) -> None:
    table = new_table(lake, "ns.t", ID_V_SCHEMA)
    table.append(id_v_rows(range(0, 5)))
    table.append(id_v_rows([5]))
    table.append(id_v_rows(range(10, 15)))
    add_position_deletes(table, {_file_with(table, 0): [1]})  # one file-scoped delete file each
    add_position_deletes(table, {_file_with(table, 12): [0]})
    upsert_with_equality_deletes(table, id_v_rows([5], tag="u"), ["id"])  # eq delete hides the old row 5
    assert find_dangling_delete_files(table) == []
    assert clean_dangling_delete_files(table).removed_paths == []

    # drop the file of rows 0..4: its position delete file now dangles
    table.delete("id < 5")
    dangling = find_dangling_delete_files(table)
    assert [d.content for d in dangling] == ["position_deletes"]
    before = content_hash(read_table(table))
    dry = clean_dangling_delete_files(table, dry_run=True)
    assert dry.removed_paths == [d.path for d in dangling] and dry.snapshot_id is None
    result = clean_dangling_delete_files(table)
    assert result.dangling_position_deletes == 1 and result.snapshot_id is not None
    assert table.current_snapshot().summary.operation.value == "replace"
    assert content_hash(read_table(table)) == before

    # drop the old row 5 and rows 10..14: the equality delete (only newer data left) and the
    # second position delete dangle
    table.delete("v = 'r5'")
    table.delete("id >= 10")
    dangling = find_dangling_delete_files(table)
    assert sorted(d.content for d in dangling) == ["equality_deletes", "position_deletes"]
    before = content_hash(read_table(table))
    second = clean_dangling_delete_files(table)
    assert (second.dangling_equality_deletes, second.dangling_position_deletes) == (1, 1)
    assert content_hash(read_table(table)) == before
    assert sorted(read_table(table).column("v").to_pylist()) == ["u5"]
    assert expire_snapshots(table, keep_duration_ms=0, dry_run=True).deleted_delete_files == 1
    assert table.current_snapshot().summary.additional_properties["total-delete-files"] == "0"

    assert (
        table.current_snapshot().summary.additional_properties["snapshot-producer"] == "CLEAN_DANGLING_DELETE"
    )
    # expiry keeps the last snapshot that is not an Amoro maintenance commit (as Amoro); after a new
    # commit it deletes the removed delete files from storage
    table.append(id_v_rows([20]))
    before = content_hash(read_table(table))
    expired = expire_snapshots(table, keep_duration_ms=0)
    assert expired.deleted_delete_files == 3
    remaining = storage_files(table)
    assert all(norm(p) not in remaining for p in [*second.removed_paths, *dry.removed_paths])
    assert content_hash(read_table(table)) == before


def test_position_delete_bounds_decide(sqlite_catalog: Catalog) -> None:
    """A partitioned position delete naming two files keeps applying while one of them is live."""
    sqlite_catalog.create_namespace("ns")
    field = PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="v")
    table = sqlite_catalog.create_table(
        "ns.p", schema=id_v_iceberg_schema(), partition_spec=PartitionSpec(field)
    )
    table.append(pa.table({"id": pa.array([1, 2], pa.int64()), "v": ["x", "x"]}, schema=ID_V_SCHEMA))
    table.append(pa.table({"id": pa.array([3, 4], pa.int64()), "v": ["x", "x"]}, schema=ID_V_SCHEMA))
    first, second = sorted(live_data_files(table), key=lambda f: f.file_path)
    add_position_deletes(table, [(first.file_path, 0), (second.file_path, 0)])
    table.delete("id <= 2")
    left = {f.file_path for f in live_data_files(table)}
    assert len(left) == 1
    assert find_dangling_delete_files(table) == []
    table.delete("id >= 3")
    assert [d.content for d in find_dangling_delete_files(table)] == ["position_deletes"]


def test_switches(sqlite_catalog: Catalog) -> None:
    sqlite_catalog.create_namespace("ns")
    table = sqlite_catalog.create_table(
        "ns.t", schema=ID_V_SCHEMA, properties={"clean-dangling-delete-files.enabled": "false"}
    )
    table.append(id_v_rows([1]))
    assert clean_dangling_delete_files(table).skip_reason == "clean-dangling-delete-files.enabled=false"
    table.transaction().set_properties({"gc.enabled": "false"}).commit_transaction()
    assert clean_dangling_delete_files(table).skip_reason == "gc.enabled=false"
