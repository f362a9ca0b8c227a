"""Streaming reads with deletes applied, checked against the independent iceberg-rust reader."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.types import LongType

from airflow_provider_amoro.optimizing.model import FileRef
from airflow_provider_amoro.optimizing.read import (
    InputFileError,
    TaskDeletes,
    output_arrow_schema,
    read_task_batches,
)
from airflow_provider_amoro.testing.deletes import (
    add_equality_deletes,
    add_position_deletes,
    file_refs,
    upsert_with_equality_deletes,
)
from airflow_provider_amoro.testing.reader import content_hash, read_table

SCHEMA = pa.schema([("id", pa.int64()), ("cat", pa.string()), ("v", pa.string())])


def _rows(ids: list[int], tag: str = "v") -> pa.Table:
    return pa.table(
        {"id": ids, "cat": [f"c{i % 3}" for i in ids], "v": [f"{tag}{i}" for i in ids]}, schema=SCHEMA
    )


def _read_all(table: Any, **kwargs: Any) -> pa.Table:
    data, deletes = file_refs(table)
    batches = list(read_task_batches(table, data, deletes, **kwargs))
    schema = output_arrow_schema(table.schema())
    assert all(b.schema == schema for b in batches)
    return pa.Table.from_batches(batches, schema=schema)


def _partitioned_table_with_deletes(catalog: Any) -> Any:
    catalog.create_namespace("db")
    table = catalog.create_table("db.t", schema=SCHEMA)
    with table.update_spec() as spec:
        spec.add_identity("cat")
    table.append(_rows(list(range(0, 300))))
    table.append(_rows(list(range(300, 600))))
    data, _ = file_refs(table)
    add_position_deletes(table, {data[0].path: [0, 1, 2, 50], data[3].path: list(range(0, 100, 3))})
    add_equality_deletes(table, _rows([7, 8, 9, 400, 401, 599, 10_000]), ["id"])
    upsert_with_equality_deletes(table, _rows([10, 11, 12, 450], tag="new"), ["id", "cat"])
    data, _ = file_refs(table)
    add_position_deletes(table, {data[-1].path: [0]})
    table.append(_rows([7, 8], tag="late"))  # appended after the equality delete: stays
    return table


def test_read_matches_iceberg_rust(catalog: Any) -> None:
    table = _partitioned_table_with_deletes(catalog)
    expected = read_table(table)
    got = _read_all(table, batch_size=64)
    assert got.num_rows == expected.num_rows
    assert content_hash(got) == content_hash(expected)
    assert {r["id"]: r["v"] for r in got.to_pylist() if r["id"] in (7, 8, 10, 450)} == {
        7: "late7",
        8: "late8",
        10: "new10",
        450: "new450",
    }


def test_read_one_partition_and_batch_sizes(sqlite_catalog: Any) -> None:
    table = _partitioned_table_with_deletes(sqlite_catalog)
    data, deletes = file_refs(table)
    part = [d for d in data if d.partition == ["c1"]]
    assert len(part) >= 3
    batches = list(read_task_batches(table, part, deletes, batch_size=50))
    assert all(0 < b.num_rows <= 50 for b in batches)
    got = pa.Table.from_batches(batches)
    expected = read_table(table).filter(pc.field("cat") == "c1")
    assert content_hash(got) == content_hash(expected)


def test_deleted_positions_from_equality_deletes(sqlite_catalog: Any) -> None:
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.t", schema=SCHEMA)
    table.append(_rows(list(range(20))))
    add_equality_deletes(table, pa.table({"id": [3, 5, 19]}), ["id"])
    add_position_deletes(table, {file_refs(table)[0][0].path: [5, 6]})
    data, deletes = file_refs(table)
    index = TaskDeletes.load(table, data, deletes)
    assert index.equality_key_rows == 3
    assert index.deleted_positions(data[0]).tolist() == [3, 5, 6, 19]
    assert index.position_deletes_for(data[0]).tolist() == [5, 6]


def test_equality_null_keys_multi_column(sqlite_catalog: Any) -> None:
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.t", schema=SCHEMA)
    table.append(
        pa.table(
            {
                "id": [1, 1, None, None, 2],
                "cat": ["a", None, "a", None, None],
                "v": ["1a", "1n", "na", "nn", "2n"],
            },
            schema=SCHEMA,
        )
    )
    keys = pa.table(
        {"id": pa.array([1, None, 2], pa.int64()), "cat": pa.array([None, None, "x"], pa.string())}
    )
    add_equality_deletes(table, keys, ["id", "cat"])
    got = _read_all(table)
    assert sorted(got.column("v").to_pylist()) == ["1a", "2n", "na"]
    assert content_hash(got) == content_hash(read_table(table))


def test_evolved_schema_add_rename_promote(catalog: Any) -> None:
    catalog.create_namespace("db")
    schema = pa.schema([("id", pa.int32()), ("name", pa.string())])
    table = catalog.create_table("db.t", schema=schema)
    table.append(pa.table({"id": pa.array([1, 2, 3], pa.int32()), "name": ["a", "b", "c"]}))
    add_equality_deletes(table, pa.table({"name": ["b"]}), ["name"])  # before the rename
    with table.update_schema() as update:
        update.add_column("extra", LongType())
        update.rename_column("name", "label")
        update.update_column("id", field_type=LongType())
    table.append(
        pa.table({"id": pa.array([4], pa.int64()), "label": ["b"], "extra": pa.array([40], pa.int64())})
    )
    got = _read_all(table)
    assert got.schema.names == ["id", "label", "extra"]
    assert got.schema.field("id").type == pa.int64()
    assert sorted(got.to_pylist(), key=lambda r: r["id"]) == [
        {"id": 1, "label": "a", "extra": None},
        {"id": 3, "label": "c", "extra": None},
        {"id": 4, "label": "b", "extra": 40},
    ]
    assert content_hash(got) == content_hash(read_table(table))


def test_missing_and_short_files(sqlite_catalog: Any) -> None:
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.t", schema=SCHEMA)
    table.append(_rows(list(range(10))))
    add_position_deletes(table, {file_refs(table)[0][0].path: [1]})
    data, deletes = file_refs(table)
    ghost = FileRef(**{**data[0].to_dict(), "path": data[0].path + ".missing"})
    with pytest.raises(InputFileError, match="missing"):
        list(read_task_batches(table, [ghost], []))
    wrong_count = FileRef(**{**data[0].to_dict(), "record_count": 11})
    with pytest.raises(InputFileError, match="plan expected 11"):
        list(read_task_batches(table, [wrong_count], deletes))
    lost_delete = FileRef(**{**deletes[0].to_dict(), "path": deletes[0].path + ".gone"})
    with pytest.raises(InputFileError, match="gone"):
        list(read_task_batches(table, data, [lost_delete]))
    not_parquet = FileRef(**{**data[0].to_dict(), "path": table.metadata_location})
    with pytest.raises(InputFileError, match="not a readable Parquet file"):
        list(read_task_batches(table, [not_parquet], []))


def _normalize(data: pa.Table) -> pa.Table:
    """Comparable columns: UUIDs as binary, timestamps as integers (readers differ in Python reprs)."""
    columns = {}
    for name in data.column_names:
        col = data.column(name)
        if isinstance(col.type, pa.BaseExtensionType):
            col = pa.chunked_array([c.storage for c in col.chunks], type=col.type.storage_type)
        if pa.types.is_fixed_size_binary(col.type) and col.type.byte_width == 16:
            col = col.cast(pa.binary())
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        columns[name] = col
    return pa.table(columns)


def test_equality_deletes_on_every_primitive_type(sqlite_catalog: Any) -> None:
    import datetime as dt
    import uuid
    from decimal import Decimal

    from pyiceberg.schema import Schema
    from pyiceberg.types import (
        BinaryType,
        BooleanType,
        DateType,
        DecimalType,
        DoubleType,
        FixedType,
        IntegerType,
        NestedField,
        StringType,
        TimestamptzType,
        UUIDType,
    )

    schema = Schema(
        NestedField(1, "id", LongType()),
        NestedField(2, "d", DateType()),
        NestedField(3, "dec", DecimalType(10, 2)),
        NestedField(4, "b", BooleanType()),
        NestedField(5, "bin", BinaryType()),
        NestedField(6, "ts", TimestamptzType()),
        NestedField(7, "f", DoubleType()),
        NestedField(8, "i", IntegerType()),
        NestedField(9, "u", UUIDType()),
        NestedField(10, "fx", FixedType(4)),
        NestedField(11, "s", StringType()),
    )
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.t", schema=schema)
    n = 60
    utc = dt.timezone.utc
    rows = pa.table(
        {
            "id": list(range(n)),
            "d": [dt.date(2024, 1, 1 + i % 17) if i % 4 else None for i in range(n)],
            "dec": [Decimal(f"{i % 13}.50") if i % 5 else None for i in range(n)],
            "b": [bool(i % 2) if i % 6 else None for i in range(n)],
            "bin": [bytes([i % 11]) if i % 7 else None for i in range(n)],
            "ts": [dt.datetime(2024, 1, 1, i % 7, tzinfo=utc) if i % 3 else None for i in range(n)],
            "f": [float(i % 9) if i % 4 else None for i in range(n)],
            "i": [i % 10 if i % 5 else None for i in range(n)],
            "u": [uuid.UUID(int=i % 5).bytes if i % 3 else None for i in range(n)],
            "fx": [bytes([0, 0, i % 6, i % 2]) if i % 4 else None for i in range(n)],
            "s": [f"s{i % 19}" if i % 8 else None for i in range(n)],
        },
        schema=output_arrow_schema(schema),
    )
    table.append(rows)
    key_sets = [["d", "dec"], ["b", "bin"], ["ts", "f", "i"], ["fx", "s"], ["s"]]
    for k, cols in enumerate(key_sets):
        add_equality_deletes(table, rows.select(cols).slice(k * 3 + 1, 3), cols)
        got = _normalize(_read_all(table))
        expected = _normalize(read_table(table))
        assert got.num_rows == expected.num_rows
        assert content_hash(got) == content_hash(expected.select(got.column_names)), cols
    assert 0 < got.num_rows < n
    # iceberg-rust cannot apply equality deletes on UUID columns; check those against Python
    uuid_keys = rows.select(["u"]).slice(0, 2)  # a NULL and UUID(1)
    add_equality_deletes(table, uuid_keys, ["u"])
    deleted = set(_normalize(uuid_keys).column("u").to_pylist())
    assert deleted == {None, uuid.UUID(int=1).bytes}
    survivors = {r["id"] for r in got.to_pylist() if r["u"] not in deleted}
    assert {r["id"] for r in _read_all(table).to_pylist()} == survivors
    assert survivors


def test_unsorted_position_delete_file_with_foreign_paths(sqlite_catalog: Any, tmp_path: Any) -> None:
    import pyarrow.parquet as pq

    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.t", schema=SCHEMA)
    table.append(_rows(list(range(10))))
    table.append(_rows(list(range(10, 20))))
    data, _ = file_refs(table)
    path = tmp_path / "unsorted-deletes.parquet"
    pq.write_table(
        pa.table(
            {
                "file_path": [
                    data[1].path,
                    data[0].path,
                    "file:///elsewhere.parquet",
                    data[1].path,
                    data[1].path,
                ],
                "pos": [7, 3, 1, 2, 7],
            }
        ),
        path,
    )
    ref = FileRef(
        path=path.as_uri(),
        content="position_deletes",
        size_bytes=path.stat().st_size,
        record_count=5,
        spec_id=0,
        partition=[],
        data_sequence_number=2,
    )
    index = TaskDeletes.load(table, data, [ref])
    assert index.position_deletes_for(data[0]).tolist() == [3]
    assert index.position_deletes_for(data[1]).tolist() == [2, 7]
    assert set(index.positions[ref.path]) == {data[0].path, data[1].path}
    live = pa.Table.from_batches(list(read_task_batches(table, data, deletes=index)))
    assert live.num_rows == 17


def test_equality_delete_sequence_and_partition_scopes(sqlite_catalog: Any) -> None:
    from pyiceberg.typedef import Record

    from airflow_provider_amoro.optimizing.delete_files import write_equality_delete_file
    from airflow_provider_amoro.testing.deletes import commit_row_delta

    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.t", schema=SCHEMA)
    table.append(_rows([1, 2, 3], tag="s1-"))  # unpartitioned spec 0, seq 1
    with table.update_spec() as spec:
        spec.add_identity("cat")

    def row(i: int, cat: str, tag: str) -> pa.Table:
        return pa.table({"id": [i], "cat": [cat], "v": [f"{tag}{i}"]}, schema=SCHEMA)

    table.append(pa.concat_tables([row(1, "c0", "s2-"), row(1, "c1", "s2-"), row(5, "c1", "s2-")]))  # seq 2
    add_equality_deletes(table, row(1, "c1", "x"), ["id"])  # seq 3, partition cat=c1 only
    table.append(row(1, "c1", "s4-"))  # seq 4: newer than the delete, stays
    add_equality_deletes(table, row(5, "c1", "x"), ["id"])  # seq 5
    add_equality_deletes(table, row(5, "c1", "x"), ["id"])  # seq 6: the same key again
    # a global delete: written with the old unpartitioned spec 0, applies to every partition
    delete = write_equality_delete_file(table, pa.table({"id": [2]}), [1], spec_id=0, partition=Record())
    commit_row_delta(table, delete_files=[delete])  # seq 7
    table.append(row(2, "c0", "s8-"))  # seq 8, stays

    got = _read_all(table)
    assert sorted((r["id"], r["v"]) for r in got.to_pylist()) == [
        (1, "s1-1"),  # spec 0 file in the unpartitioned scope: the c1 delete does not reach it
        (1, "s2-1"),  # cat=c0: the delete was scoped to cat=c1
        (1, "s4-1"),
        (2, "s8-2"),
        (3, "s1-3"),
    ]
    assert content_hash(got) == content_hash(read_table(table))
    data, deletes = file_refs(table)
    index = TaskDeletes.load(table, data, deletes)
    index.resolve_equality(data, max_rows=2)  # several join batches
    single = TaskDeletes.load(table, data, deletes)
    for d in data:
        assert index.deleted_positions(d).tolist() == single.deleted_positions(d).tolist()


def test_many_small_files_keep_file_order(sqlite_catalog: Any) -> None:
    import pyarrow.parquet as pq

    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.t", schema=SCHEMA)
    for k in range(24):
        table.append(_rows(list(range(k * 10, k * 10 + 10))))
    data, deletes = file_refs(table)
    got = pa.Table.from_batches(list(read_task_batches(table, data, deletes)))
    expected = [
        i for d in data for i in pq.read_table(d.path.removeprefix("file://")).column("id").to_pylist()
    ]
    assert got.column("id").to_pylist() == expected


def test_equality_delete_on_a_column_added_later(sqlite_catalog: Any) -> None:
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.t", schema=pa.schema([("id", pa.int64())]))
    table.append(pa.table({"id": [1, 2, 3]}))
    with table.update_schema() as update:
        update.add_column("extra", LongType())
    table.append(pa.table({"id": [4, 5, 6], "extra": [None, 50, 60]}))
    # NULL in the new column: deletes the old rows (which lack the column) and id 4
    add_equality_deletes(table, pa.table({"extra": pa.array([None, 60], pa.int64())}), ["extra"])
    got = _read_all(table)
    assert got.to_pylist() == [{"id": 5, "extra": 50}]
    assert content_hash(got) == content_hash(read_table(table))
