"""Delete-file helpers: every commit is checked with the independent iceberg-rust reader."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import ID_CAT_V_SCHEMA, id_cat_v_rows, new_table
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import ValidationException
from pyiceberg.manifest import DataFileContent
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import BucketTransform, DayTransform
from pyiceberg.types import DateType, LongType, NestedField, TimestampType

from airflow_provider_amoro.optimizing.delete_files import POS_FILE_PATH_FIELD_ID, POS_POS_FIELD_ID
from airflow_provider_amoro.testing.deletes import (
    add_equality_deletes,
    add_position_deletes,
    file_refs,
    live_data_files,
    upsert_with_equality_deletes,
    write_position_delete_file,
)
from airflow_provider_amoro.testing.reader import read_table


def _ids(table: Table) -> list[int]:
    return sorted(read_table(table).column("id").to_pylist())


def _entries(table: Table) -> list[dict[str, Any]]:
    """Live manifest entries of the current snapshot (with inherited sequence numbers), as dicts."""
    result = []
    for manifest in table.current_snapshot().manifests(table.io):
        for e in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            f = e.data_file
            result.append(
                {
                    "snapshot_id": e.snapshot_id,
                    "sequence_number": e.sequence_number,
                    "file_sequence_number": e.file_sequence_number,
                    "manifest_content": int(manifest.content),
                    "data_file": {
                        "content": int(f.content),
                        "file_path": f.file_path,
                        "record_count": f.record_count,
                        "file_size_in_bytes": f.file_size_in_bytes,
                        "lower_bounds": f.lower_bounds,
                        "upper_bounds": f.upper_bounds,
                        "null_value_counts": f.null_value_counts,
                        "equality_ids": f.equality_ids,
                        "partition": f.partition,
                        "spec_id": f.spec_id,
                    },
                }
            )
    return result


def _file_ids(table: Table, path: str) -> list[int]:
    return pq.read_table(path.removeprefix("file://")).column("id").to_pylist()


def test_position_deletes_unpartitioned(catalog: Catalog) -> None:
    table = new_table(catalog, "db.t", ID_CAT_V_SCHEMA)
    table.append(id_cat_v_rows(list(range(10))))
    table.append(id_cat_v_rows(list(range(10, 20))))
    files = sorted(live_data_files(table), key=lambda f: f.file_path)
    first_ids = _file_ids(table, files[0].file_path)
    second_ids = _file_ids(table, files[1].file_path)

    add_position_deletes(table, {files[0].file_path: [0, 3], files[1].file_path: [9]})
    expected = set(range(20)) - {first_ids[0], first_ids[3], second_ids[9]}
    assert _ids(table) == sorted(expected)

    snap = table.current_snapshot()
    assert snap.summary.operation.value == "delete"
    props = snap.summary.additional_properties
    assert props["added-delete-files"] == "1"
    assert props["added-position-deletes"] == "3"
    assert props["total-position-deletes"] == "3"
    assert props["total-data-files"] == "2"
    assert props["total-records"] == "20"

    deletes = [e for e in _entries(table) if e["data_file"]["content"] == 1]
    assert len(deletes) == 1
    entry = deletes[0]
    assert entry["sequence_number"] == snap.sequence_number == 3
    assert entry["file_sequence_number"] == 3
    assert entry["manifest_content"] == 1  # a DELETES manifest
    df = entry["data_file"]
    assert df["record_count"] == 3
    assert df["file_size_in_bytes"] == len(table.io.new_input(df["file_path"]))
    paths = sorted(f.file_path for f in files)
    assert df["lower_bounds"][POS_FILE_PATH_FIELD_ID] == paths[0].encode()
    assert df["upper_bounds"][POS_FILE_PATH_FIELD_ID] == paths[1].encode()
    assert POS_POS_FIELD_ID in df["lower_bounds"]
    written = pq.read_table(df["file_path"].removeprefix("file://"))
    assert written.column_names == ["file_path", "pos"]
    assert written.to_pylist() == sorted(written.to_pylist(), key=lambda r: (r["file_path"], r["pos"]))
    # Data files keep their sequence numbers.
    data_seqs = sorted(e["sequence_number"] for e in _entries(table) if e["data_file"]["content"] == 0)
    assert data_seqs == [1, 2]


def test_deletes_across_commits_identity_partitioned(sqlite_catalog: Catalog) -> None:
    table = new_table(sqlite_catalog, "db.t", ID_CAT_V_SCHEMA, identity=["cat"])
    table.append(id_cat_v_rows(list(range(30))))
    files = live_data_files(table)
    assert len(files) == 3
    alive = set(range(30))
    for round_no in range(3):
        deletes = {}
        for f in files:
            ids = _file_ids(table, f.file_path)
            deletes[f.file_path] = [round_no]
            alive.discard(ids[round_no])
        add_position_deletes(table, deletes)
        assert _ids(table) == sorted(alive)
    add_equality_deletes(table, id_cat_v_rows([12, 13, 14]), ["id"])
    alive -= {12, 13, 14}
    assert _ids(table) == sorted(alive)
    entries = _entries(table)
    pos = [e for e in entries if e["data_file"]["content"] == 1]
    eq = [e for e in entries if e["data_file"]["content"] == 2]
    # one position delete file per partition per commit; one equality delete file per partition
    assert sorted(e["sequence_number"] for e in pos) == [2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert len(eq) == 3 and {e["sequence_number"] for e in eq} == {5}
    assert {e["data_file"]["partition"][0] for e in eq} == {"c0", "c1", "c2"}
    assert all(e["data_file"]["equality_ids"] == [1] for e in eq)
    assert table.current_snapshot().summary.additional_properties["total-delete-files"] == "12"


def test_equality_deletes_bucket_partition_and_later_appends(sqlite_catalog: Catalog) -> None:
    table = new_table(sqlite_catalog, "db.t", ID_CAT_V_SCHEMA)
    with table.update_spec() as spec:
        spec.add_field("id", BucketTransform(4), "id_bucket")
    table.append(id_cat_v_rows(list(range(40))))
    add_equality_deletes(table, pa.table({"id": [1, 2, 3, 39, 1000]}), ["id"])
    assert _ids(table) == sorted(set(range(40)) - {1, 2, 3, 39})
    # a row appended later with a deleted key stays: the delete's sequence number is lower
    table.append(id_cat_v_rows([1, 2]))
    assert _ids(table) == sorted((set(range(40)) - {3, 39}) | {1, 2})
    eq = [e for e in _entries(table) if e["data_file"]["content"] == 2]
    assert 1 <= len(eq) <= 4
    assert sum(e["data_file"]["record_count"] for e in eq) == 5


def test_equality_deletes_string_key_and_null(sqlite_catalog: Catalog) -> None:
    table = new_table(sqlite_catalog, "db.t", ID_CAT_V_SCHEMA)
    table.append(
        pa.table(
            {"id": [1, 2, 3, 4], "cat": ["a", None, "b", None], "v": ["x", "y", "z", "w"]},
            schema=ID_CAT_V_SCHEMA,
        )
    )
    add_equality_deletes(table, pa.table({"cat": pa.array([None, "b"], pa.string())}), ["cat"])
    assert _ids(table) == [1]
    df = next(e for e in _entries(table) if e["data_file"]["content"] == 2)["data_file"]
    assert df["null_value_counts"][2] == 1
    assert df["equality_ids"] == [2]


def test_day_partition_pos_and_eq_deletes(sqlite_catalog: Catalog) -> None:
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "ts", TimestampType(), required=False),
        NestedField(3, "d", DateType(), required=False),
    )
    table = new_table(sqlite_catalog, "db.t", schema)
    with table.update_spec() as spec:
        spec.add_field("ts", DayTransform(), "ts_day")
    base = dt.datetime(2024, 1, 1)
    ids = list(range(24))
    data = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "ts": pa.array([base + dt.timedelta(hours=5 * i) for i in ids], pa.timestamp("us")),
            "d": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i % 2) for i in ids], pa.date32()),
        }
    )
    table.append(data)
    files = live_data_files(table)
    assert len(files) == 5
    target = files[0]
    first = _file_ids(table, target.file_path)[0]
    add_position_deletes(table, [(target.file_path, 0)])
    # equality delete on (id, d); rows carry ts so the partition can be computed
    add_equality_deletes(
        table, data.filter(pa.compute.is_in(data.column("id"), pa.array([5, 6, 7]))), ["id", "d"]
    )
    assert _ids(table) == sorted(set(ids) - {first, 5, 6, 7})
    eq = [e for e in _entries(table) if e["data_file"]["content"] == 2]
    assert all(e["data_file"]["equality_ids"] == [1, 3] for e in eq)
    assert {e["data_file"]["partition"][0] for e in eq} <= {f.partition[0] for f in files}


def test_upsert_with_equality_deletes(catalog: Catalog) -> None:
    table = new_table(catalog, "db.t", ID_CAT_V_SCHEMA, identity=["cat"])
    table.append(id_cat_v_rows(list(range(9))))
    upsert_with_equality_deletes(
        table,
        pa.table({"id": [0, 4, 100], "cat": ["c0", "c1", "c1"], "v": ["n0", "n4", "n100"]}),
        ["id", "cat"],
    )
    rows = {r["id"]: r["v"] for r in read_table(table).to_pylist()}
    assert rows == {**{i: f"v{i}" for i in range(9)}, 0: "n0", 4: "n4", 100: "n100"}
    snap = table.current_snapshot()
    assert snap.summary.operation.value == "overwrite"
    props = snap.summary.additional_properties
    assert props["added-data-files"] == "2" and props["added-equality-delete-files"] == "2"
    assert props["total-records"] == "12"
    new = [e for e in _entries(table) if e["snapshot_id"] == snap.snapshot_id]
    assert {e["sequence_number"] for e in new} == {snap.sequence_number}
    # a second upsert of the same key replaces the previous upsert's row
    upsert_with_equality_deletes(table, pa.table({"id": [4], "cat": ["c1"], "v": ["again"]}), ["id", "cat"])
    rows = {r["id"]: r["v"] for r in read_table(table).to_pylist()}
    assert rows[4] == "again" and len(rows) == 10


def test_errors_leave_no_files(sqlite_catalog: Catalog, tmp_path: Any) -> None:
    table = new_table(sqlite_catalog, "db.t", ID_CAT_V_SCHEMA)
    table.append(id_cat_v_rows(list(range(5))))
    path = live_data_files(table)[0].file_path
    with pytest.raises(ValueError, match="not a live data file"):
        add_position_deletes(table, {path + ".x": [0]})
    with pytest.raises(ValueError, match="outside"):
        add_position_deletes(table, {path: [5]})
    with pytest.raises(ValueError, match="duplicate keys"):
        upsert_with_equality_deletes(table, id_cat_v_rows([1, 1]), ["id"])
    with pytest.raises(ValueError, match="lack columns"):
        add_equality_deletes(table, pa.table({"v": ["a"]}), ["id"])
    files = [p for p in (tmp_path / "warehouse").rglob("*.parquet")]
    assert len(files) == 1


def test_concurrent_removal_of_referenced_file_fails(sqlite_catalog: Catalog, tmp_path: Any) -> None:
    table = new_table(sqlite_catalog, "db.t", ID_CAT_V_SCHEMA)
    table.append(id_cat_v_rows(list(range(5))))
    table.append(id_cat_v_rows(list(range(5, 10))))
    stale = sqlite_catalog.load_table("db.t")
    fresh = sqlite_catalog.load_table("db.t")
    fresh.delete("id < 5")  # removes the first data file entirely
    gone = [
        f.file_path
        for f in live_data_files(stale)
        if f.file_path not in {g.file_path for g in live_data_files(fresh)}
    ]
    assert len(gone) == 1
    with pytest.raises(ValidationException, match="concurrently removed"):
        add_position_deletes(stale, {gone[0]: [0]})
    assert not list((tmp_path / "warehouse").rglob("*-pos-deletes.parquet"))
    # a stale table object still commits when the data file is live (optimistic retry)
    stale = sqlite_catalog.load_table("db.t")
    fresh = sqlite_catalog.load_table("db.t")
    fresh.append(id_cat_v_rows([50]))
    keep = live_data_files(stale)[0]
    add_position_deletes(stale, {keep.file_path: [0]})
    table = sqlite_catalog.load_table("db.t")
    assert len(_ids(table)) == 5
    assert table.current_snapshot().summary.additional_properties["total-records"] == "6"


def test_write_position_delete_file_without_commit(sqlite_catalog: Catalog) -> None:
    table = new_table(sqlite_catalog, "db.t", ID_CAT_V_SCHEMA)
    table.append(id_cat_v_rows(list(range(5))))
    data_file = live_data_files(table)[0]
    df = write_position_delete_file(
        table, [(data_file.file_path, 4), (data_file.file_path, 1)], spec_id=0, partition=data_file.partition
    )
    assert df.content == DataFileContent.POSITION_DELETES
    assert df.record_count == 2 and df.spec_id == 0
    assert pq.read_table(df.file_path.removeprefix("file://")).column("pos").to_pylist() == [1, 4]
    assert table.current_snapshot().summary.additional_properties.get("total-delete-files") == "0"


def test_file_refs_sequence_numbers_and_referenced_file(sqlite_catalog: Catalog) -> None:
    table = new_table(sqlite_catalog, "db.t", ID_CAT_V_SCHEMA)
    table.append(id_cat_v_rows([1, 2]))
    table.append(id_cat_v_rows([3, 4]))
    first, second = (f.file_path for f in sorted(live_data_files(table), key=lambda f: f.file_path))
    add_position_deletes(table, {first: [0]})
    add_position_deletes(table, {first: [1], second: [0]})
    upsert_with_equality_deletes(table, id_cat_v_rows([5]), ["id"])
    data, deletes = file_refs(table)
    assert sorted(d.data_sequence_number for d in data) == [1, 2, 5]
    pos = sorted(
        (d for d in deletes if d.content == "position_deletes"), key=lambda d: d.data_sequence_number
    )
    assert [(d.data_sequence_number, d.referenced_data_file) for d in pos] == [(3, first), (4, None)]
    (eq,) = [d for d in deletes if d.content == "equality_deletes"]
    assert eq.data_sequence_number == 5 and eq.equality_ids == [1] and eq.referenced_data_file is None
