"""Executing rewrite tasks on real tables; outputs are checked row for row against iceberg-rust."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyiceberg.table.sorting import NullOrder, SortDirection, SortField, SortOrder
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import LongType

from airflow_provider_amoro.optimizing.execute import execute
from airflow_provider_amoro.optimizing.model import FileRef, RewriteTask, TaskResult, datafile_from_dict
from airflow_provider_amoro.optimizing.read import InputFileError, output_arrow_schema, read_task_batches
from airflow_provider_amoro.testing.deletes import (
    add_equality_deletes,
    add_position_deletes,
    file_refs,
    upsert_with_equality_deletes,
)
from airflow_provider_amoro.testing.reader import content_hash, read_table

# the module (the package's ``execute`` attribute is the function, re-exported)
execute_module = importlib.import_module("airflow_provider_amoro.optimizing.execute")

MB = 1 << 20
SCHEMA = pa.schema([("id", pa.int64()), ("cat", pa.string()), ("s", pa.string()), ("x", pa.float64())])


def _rows(start: int, n: int, seed: int = 0) -> pa.Table:
    ids = np.arange(start, start + n, dtype=np.int64)
    rng = np.random.default_rng(seed + start)
    noise = rng.integers(0, 2**62, size=(n, 2))
    return pa.table(
        {
            "id": ids,
            "cat": pa.array([f"c{i % 3}" for i in ids]),
            "s": pa.array([f"{a:016x}{b:016x}" for a, b in noise.tolist()]),
            "x": rng.random(n),
        },
        schema=SCHEMA,
    )


def _local(path: str) -> str:
    return path.removeprefix("file://")


def _outputs_table(result: TaskResult, content: str = "data") -> pa.Table:
    files = [o for o in result.outputs if o["content"] == content]
    return pa.concat_tables([pq.read_table(_local(o["file_path"])) for o in files])


def _task(data: list[FileRef], deletes: list[FileRef], **kwargs: Any) -> RewriteTask:
    first = (data or kwargs.get("rewrite_pos_data_files") or [])[0]
    args: dict[str, Any] = {
        "task_id": 0,
        "kind": "major",
        "spec_id": first.spec_id,
        "partition": first.partition,
        "partition_path": "",
        "rewrite_data_files": data,
        "delete_files": deletes,
    }
    args.update(kwargs)
    return RewriteTask(**args)


def _parquet_files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*.parquet")}


def _table(catalog: Any, target: int = MB, **props: str) -> Any:
    catalog.create_namespace("db")
    return catalog.create_table(
        "db.t", schema=SCHEMA, properties={"self-optimizing.target-size": str(target), **props}
    )


def test_execute_target_size_content_and_statistics(catalog: Any) -> None:
    target = 512 * 1024
    table = _table(catalog, target=target)
    for k in range(8):
        table.append(_rows(k * 8000, 8000))
    data, _ = file_refs(table)
    add_position_deletes(table, {data[0].path: list(range(0, 8000, 2))})
    # few equality keys: iceberg-rust (the reference reader) is slow on large equality deletes
    add_equality_deletes(table, pa.table({"id": np.arange(8000, 16_000, 37)}), ["id"])
    data, deletes = file_refs(table)
    expected = read_table(table)
    expected_hash = content_hash(expected)

    result = execute(table, _task(data, deletes))

    out = _outputs_table(result)
    assert content_hash(out) == expected_hash
    assert result.input_records == result.output_records == expected.num_rows
    assert result.input_files == len(data) + len(deletes)
    assert result.input_bytes == sum(f.size_bytes for f in [*data, *deletes])
    sizes = [o["file_size_in_bytes"] for o in result.outputs]
    assert len(sizes) >= 3
    assert all(0.8 * target <= s <= 1.2 * target for s in sizes[:-1]), sizes
    assert sizes[-1] <= 1.2 * target
    assert result.output_bytes == sum(sizes)
    for o in result.outputs:
        meta = pq.ParquetFile(_local(o["file_path"])).metadata
        assert o["record_count"] == meta.num_rows
        assert o["file_size_in_bytes"] == os.path.getsize(_local(o["file_path"]))
        assert o["spec_id"] == 0 and o["partition"] == [] and o["content"] == "data"
        ids = pq.read_table(_local(o["file_path"]), columns=["id"]).column("id")
        df = datafile_from_dict(o)
        assert int.from_bytes(df.lower_bounds[1], "little", signed=True) == pc.min(ids).as_py()
        assert int.from_bytes(df.upper_bounds[1], "little", signed=True) == pc.max(ids).as_py()
        assert df.null_value_counts[1] == 0 and df.value_counts[1] == meta.num_rows

    # pyiceberg reads the outputs (and prunes with their statistics) once they are in a table
    copy = catalog.create_table("db.copy", schema=table.schema())
    with copy.transaction() as tx, tx.update_snapshot().fast_append() as append:
        for o in result.outputs:
            append.append_data_file(datafile_from_dict(o))
    assert content_hash(copy.scan().to_arrow()) == content_hash(expected)
    window = copy.scan(row_filter="id >= 100000 and id < 100500").to_arrow()
    assert content_hash(window) == content_hash(
        expected.filter((pc.field("id") >= 100000) & (pc.field("id") < 100500))
    )


def test_execute_partition_with_deletes_and_upserts(sqlite_catalog: Any) -> None:
    table = _table(sqlite_catalog, target=4 * MB)
    with table.update_spec() as spec:
        spec.add_identity("cat")
    for k in range(4):
        table.append(_rows(k * 3000, 3000))
    upsert_with_equality_deletes(table, _rows(100, 50, seed=7), ["id", "cat"])
    data, deletes = file_refs(table)
    c1 = [d for d in data if d.partition == ["c1"]]
    add_position_deletes(table, {c1[0].path: [0, 1, 2]})
    data, deletes = file_refs(table)
    c1 = [d for d in data if d.partition == ["c1"]]
    expected = read_table(table).filter(pc.field("cat") == "c1")

    result = execute(table, _task(c1, deletes, partition_path="cat=c1"))

    assert len(result.outputs) == 1
    out = result.outputs[0]
    assert out["partition"] == ["c1"] and out["spec_id"] == table.spec().spec_id
    assert "/cat=c1/" in out["file_path"]
    assert content_hash(_outputs_table(result)) == content_hash(expected)
    assert result.output_records == expected.num_rows


@pytest.mark.parametrize("budget", [None, 1])
def test_execute_old_spec_writes_current_spec(
    sqlite_catalog: Any, monkeypatch: Any, budget: int | None
) -> None:
    if budget is not None:  # a tiny buffer budget: partition writers write their buffers early
        monkeypatch.setattr(execute_module, "PENDING_BUDGET_BYTES", budget)
    table = _table(sqlite_catalog)
    table.append(_rows(0, 900))
    table.append(_rows(900, 900))
    add_equality_deletes(table, pa.table({"id": [1, 2, 3, 1000]}), ["id"])
    with table.update_spec() as spec:
        spec.add_identity("cat")
    table.append(_rows(5000, 30))  # a file in the new spec, not part of the task
    data, deletes = file_refs(table)
    old = [d for d in data if d.spec_id == 0]
    assert len(old) == 2
    expected = read_table(table).filter(pc.field("id") < 5000)

    result = execute(table, _task(old, deletes))

    assert sorted(o["partition"][0] for o in result.outputs) == ["c0", "c1", "c2"]
    assert {o["spec_id"] for o in result.outputs} == {table.spec().spec_id}
    for o in result.outputs:
        rows = pq.read_table(_local(o["file_path"]))
        assert set(rows.column("cat").to_pylist()) == {o["partition"][0]}
        assert f"/cat={o['partition'][0]}/" in o["file_path"]
    assert content_hash(_outputs_table(result)) == content_hash(expected)
    groups = [pq.ParquetFile(_local(o["file_path"])).metadata.num_row_groups for o in result.outputs]
    assert (max(groups) > 1) == (budget is not None)


def test_full_sorts_by_sort_order(sqlite_catalog: Any) -> None:
    table = _table(sqlite_catalog)
    even = pa.array(np.arange(2000) % 2 == 0)
    table.append(_rows(0, 2000).filter(even))
    table.append(_rows(0, 2000).filter(pc.invert(even)))
    order = SortOrder(
        SortField(
            source_id=2,
            transform=IdentityTransform(),
            direction=SortDirection.DESC,
            null_order=NullOrder.NULLS_LAST,
        ),
        SortField(
            source_id=1,
            transform=IdentityTransform(),
            direction=SortDirection.ASC,
            null_order=NullOrder.NULLS_FIRST,
        ),
    )
    with table.transaction() as tx:
        from pyiceberg.table.update import AddSortOrderUpdate, SetDefaultSortOrderUpdate

        tx._apply((AddSortOrderUpdate(sort_order=order), SetDefaultSortOrderUpdate(sort_order_id=-1)))
    table = sqlite_catalog.load_table("db.t")
    assert not table.sort_order().is_unsorted
    data, deletes = file_refs(table)

    full = execute(table, _task(data, deletes, kind="full"))
    rows = _outputs_table(full)
    keys = list(zip(rows.column("cat").to_pylist(), rows.column("id").to_pylist(), strict=True))
    assert keys == sorted(keys, key=lambda k: (-int(k[0][1:]), k[1]))
    assert {o["sort_order_id"] for o in full.outputs} == {table.sort_order().order_id}
    assert content_hash(rows) == content_hash(read_table(table))

    # every row deleted: a sorted full rewrite writes nothing
    add_equality_deletes(table, pa.table({"id": list(range(2000))}), ["id"])
    data_gone, deletes_gone = file_refs(table)
    assert execute(table, _task(data_gone, deletes_gone, kind="full")).outputs == []

    major = execute(table, _task(data, deletes, kind="major"))
    assert {o["sort_order_id"] for o in major.outputs} == {None}
    assert _outputs_table(major).column("id").to_pylist()[:3] in ([0, 2, 4], [1, 3, 5])  # input order


def test_rewrite_pos_merges_deletes_into_one_file(catalog: Any) -> None:
    table = _table(catalog)
    table.append(_rows(0, 1000))
    data, _ = file_refs(table)
    target = data[0]
    add_position_deletes(table, {target.path: [0, 5]})
    add_position_deletes(table, {target.path: [5, 6, 999]})
    add_equality_deletes(table, pa.table({"id": [10, 11, 500]}), ["id"])
    data, deletes = file_refs(table)
    assert len(deletes) == 3
    expected = read_table(table)

    result = execute(table, _task([], deletes, rewrite_pos_data_files=data, spec_id=0, partition=[]))

    assert len(result.outputs) == 1
    out = result.outputs[0]
    assert out["content"] == "position_deletes" and out["record_count"] == 7
    assert result.output_records == 0
    written = pq.read_table(_local(out["file_path"]))
    assert written.column("pos").to_pylist() == [0, 5, 6, 10, 11, 500, 999]
    assert set(written.column("file_path").to_pylist()) == {target.path}
    new_delete = FileRef(
        path=out["file_path"],
        content="position_deletes",
        size_bytes=out["file_size_in_bytes"],
        record_count=out["record_count"],
        spec_id=0,
        partition=[],
        data_sequence_number=max(d.data_sequence_number for d in deletes),
    )
    got = pa.Table.from_batches(list(read_task_batches(table, data, [new_delete])))
    assert content_hash(got) == content_hash(expected)


def test_evolved_schema_outputs_current_schema(sqlite_catalog: Any) -> None:
    table = _table(sqlite_catalog)
    table.append(_rows(0, 500))
    with table.update_schema() as update:
        update.add_column("extra", LongType())
        update.rename_column("s", "label")
    table.append(
        _rows(500, 10).rename_columns(["id", "cat", "label", "x"]).append_column("extra", pa.array([7] * 10))
    )
    data, deletes = file_refs(table)
    result = execute(table, _task(data, deletes))
    out = _outputs_table(result)
    assert out.column_names == ["id", "cat", "label", "x", "extra"]
    assert out.schema.field("label").metadata[b"PARQUET:field_id"] == b"3"
    assert out.schema.field("extra").metadata[b"PARQUET:field_id"] == b"5"
    assert content_hash(out) == content_hash(read_table(table))


@pytest.mark.parametrize("failure", ["missing", "corrupt"])
def test_failed_input_leaves_no_outputs(sqlite_catalog: Any, tmp_path: Path, failure: str) -> None:
    table = _table(sqlite_catalog, target=256 * 1024)
    for k in range(3):
        table.append(_rows(k * 20_000, 20_000))
    data, deletes = file_refs(table)
    before = _parquet_files(tmp_path)
    broken = data[-1]
    if failure == "missing":
        os.remove(_local(broken.path))
        match = "cannot read input file"
    else:
        Path(_local(broken.path)).write_bytes(b"PAR1 this is not parquet PAR1")
        match = "not a readable Parquet file"
    with pytest.raises(InputFileError, match=match):
        execute(table, _task(data, deletes))
    assert _parquet_files(tmp_path) <= before


def test_every_primitive_type_round_trips(sqlite_catalog: Any) -> None:
    import datetime as dt
    import uuid
    from decimal import Decimal

    from pyiceberg.io.pyarrow import schema_to_pyarrow
    from pyiceberg.schema import Schema
    from pyiceberg.types import (
        BinaryType,
        BooleanType,
        DateType,
        DecimalType,
        DoubleType,
        FixedType,
        FloatType,
        IntegerType,
        NestedField,
        StringType,
        TimestampType,
        TimestamptzType,
        TimeType,
        UUIDType,
    )

    schema = Schema(
        NestedField(1, "id", LongType()),
        NestedField(2, "d", DateType()),
        NestedField(3, "dec", DecimalType(20, 3)),
        NestedField(4, "b", BooleanType()),
        NestedField(5, "bin", BinaryType()),
        NestedField(6, "tstz", TimestamptzType()),
        NestedField(7, "ts", TimestampType()),
        NestedField(8, "f", FloatType()),
        NestedField(9, "db", DoubleType()),
        NestedField(10, "i", IntegerType()),
        NestedField(11, "u", UUIDType()),
        NestedField(12, "fx", FixedType(3)),
        NestedField(13, "s", StringType()),
        NestedField(14, "t", TimeType()),
    )
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table(
        "db.t", schema=schema, properties={"self-optimizing.target-size": "32768"}
    )
    n = 3000
    base = dt.datetime(2024, 1, 1)
    rows = pa.table(
        {
            "id": list(range(n)),
            "d": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 400) if i % 9 else None for i in range(n)],
            "dec": [Decimal(i) / 1000 if i % 5 else None for i in range(n)],
            "b": [i % 2 == 0 if i % 6 else None for i in range(n)],
            "bin": [i.to_bytes(4, "little") if i % 7 else None for i in range(n)],
            "tstz": [(base + dt.timedelta(seconds=i)).replace(tzinfo=dt.timezone.utc) for i in range(n)],
            "ts": [base + dt.timedelta(minutes=i) if i % 3 else None for i in range(n)],
            "f": [i / 4 if i % 4 else None for i in range(n)],
            "db": [float("nan") if i == 5 else i / 3 for i in range(n)],
            "i": [i if i % 8 else None for i in range(n)],
            "u": [uuid.UUID(int=i).bytes if i % 10 else None for i in range(n)],
            "fx": [i.to_bytes(3, "little") for i in range(n)],
            "s": [f"row-{i}" if i % 11 else None for i in range(n)],
            "t": [dt.time(i % 24, i % 60) for i in range(n)],
        },
        schema=schema_to_pyarrow(schema, include_field_ids=False),
    )
    table.append(rows.slice(0, 1500))
    table.append(rows.slice(1500))
    data, _ = file_refs(table)
    add_position_deletes(table, {data[0].path: [0, 10, 20]})
    data, deletes = file_refs(table)
    result = execute(table, _task(data, deletes))
    assert len(result.outputs) >= 2

    def normalize(t: pa.Table) -> pa.Table:
        cols = {}
        for name in t.column_names:
            col = t.column(name)
            if isinstance(col.type, pa.BaseExtensionType):
                col = pa.chunked_array([c.storage for c in col.chunks], type=col.type.storage_type)
            if pa.types.is_fixed_size_binary(col.type) and col.type.byte_width == 16:
                col = col.cast(pa.binary())
            if pa.types.is_timestamp(col.type):
                col = col.cast(pa.int64())
            cols[name] = col
        return pa.table(cols)

    out = normalize(_outputs_table(result))
    assert content_hash(out) == content_hash(normalize(read_table(table)).select(out.column_names))
    assert out.num_rows == n - 3
    # the outputs' statistics are usable: pyiceberg reads them back through a table with filters
    copy = sqlite_catalog.create_table("db.copy", schema=table.schema())
    with copy.transaction() as tx, tx.update_snapshot().fast_append() as append:
        for o in result.outputs:
            append.append_data_file(datafile_from_dict(o))
    assert copy.scan(row_filter="s == 'row-2500'").to_arrow().column("id").to_pylist() == [2500]
    assert copy.scan(row_filter="d == '2024-01-03'").to_arrow().num_rows == len(
        [i for i in range(n) if i % 9 and i % 400 == 2 and i not in (0, 10, 20)]
    )


def test_task_whose_rows_are_all_deleted_writes_nothing(sqlite_catalog: Any) -> None:
    table = _table(sqlite_catalog)
    table.append(_rows(0, 50))
    table.append(_rows(50, 50))
    data, _ = file_refs(table)
    add_position_deletes(table, {data[0].path: list(range(50))})
    add_equality_deletes(table, pa.table({"id": list(range(100))}), ["id"])
    data, deletes = file_refs(table)
    assert read_table(table).num_rows == 0

    result = execute(table, _task(data, deletes))

    assert result.outputs == [] and result.output_records == 0 and result.input_records == 0
    # a missing input is still noticed when all its rows are deleted
    ghost = FileRef(**{**data[0].to_dict(), "path": data[0].path + ".missing"})
    with pytest.raises(InputFileError):
        execute(table, _task([ghost], deletes))


def _set_sort_order(catalog: Any, table: Any, order: SortOrder) -> Any:
    from pyiceberg.table.update import AddSortOrderUpdate, SetDefaultSortOrderUpdate

    with table.transaction() as tx:
        tx._apply((AddSortOrderUpdate(sort_order=order), SetDefaultSortOrderUpdate(sort_order_id=-1)))
    return catalog.load_table("db.t")


def test_full_sort_with_transform_and_unusable_order(sqlite_catalog: Any) -> None:
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import BucketTransform
    from pyiceberg.types import NestedField, StringType, StructType

    schema = Schema(
        NestedField(1, "id", LongType()),
        NestedField(2, "info", StructType(NestedField(3, "name", StringType()))),
    )
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.t", schema=schema)
    ids = list(range(300, 0, -1))
    table.append(
        pa.table(
            {"id": pa.array(ids, pa.int64()), "info": [{"name": f"n{i % 7}"} for i in ids]},
            schema=output_arrow_schema(table.schema()),
        )
    )
    data, deletes = file_refs(table)
    expected = content_hash(read_table(table))

    bucketed = _set_sort_order(
        sqlite_catalog,
        table,
        SortOrder(
            SortField(source_id=1, transform=BucketTransform(4)),
            SortField(source_id=1, transform=IdentityTransform()),
        ),
    )
    rows = _outputs_table(execute(bucketed, _task(data, deletes, kind="full")))
    assert content_hash(rows) == expected
    buckets = BucketTransform(4).pyarrow_transform(LongType())(rows.column("id")).to_pylist()
    pairs = list(zip(buckets, rows.column("id").to_pylist(), strict=True))
    assert pairs == sorted(pairs)

    nested = _set_sort_order(sqlite_catalog, bucketed, SortOrder(SortField(source_id=3), order_id=2))
    result = execute(nested, _task(data, deletes, kind="full"))
    assert content_hash(_outputs_table(result)) == expected
    assert {o["sort_order_id"] for o in result.outputs} == {None}


def _layout(result: TaskResult) -> list[tuple[int, list[int]]]:
    out = []
    for o in result.outputs:
        meta = pq.ParquetFile(_local(o["file_path"])).metadata
        out.append((o["record_count"], [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]))
    return out


def test_encoding_beside_reading_writes_the_same_files_as_inline(
    sqlite_catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = 512 * 1024  # row groups of target / 4: several per file, several files
    table = _table(sqlite_catalog, target=target)
    for k in range(8):
        table.append(_rows(k * 8000, 8000))
    data, _ = file_refs(table)
    add_position_deletes(table, {data[0].path: list(range(0, 8000, 3))})
    data, deletes = file_refs(table)
    expected = content_hash(read_table(table))

    monkeypatch.setattr(execute_module, "ENCODE_THREADS", 0)
    inline = execute(table, _task(data, deletes))
    monkeypatch.setattr(execute_module, "ENCODE_THREADS", 2)
    pipelined = execute(table, _task(data, deletes))

    assert content_hash(_outputs_table(pipelined)) == content_hash(_outputs_table(inline)) == expected
    layout = _layout(pipelined)
    assert len(layout) >= 3 and all(len(groups) >= 2 for _, groups in layout[:-1])
    assert layout == _layout(inline)
    assert [o["file_size_in_bytes"] for o in pipelined.outputs] == [
        o["file_size_in_bytes"] for o in inline.outputs
    ]


def test_a_failed_encode_leaves_no_outputs(sqlite_catalog: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _table(sqlite_catalog, target=512 * 1024)
    for k in range(4):
        table.append(_rows(k * 8000, 8000))
    data, _ = file_refs(table)
    root = Path(_local(table.location()))
    before = _parquet_files(root)
    calls = [0]
    encode = execute_module.RollingParquetWriter._encode

    def failing(current: Any, rows_table: pa.Table, rows: int) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise OSError("disk full")
        encode(current, rows_table, rows)

    monkeypatch.setattr(execute_module.RollingParquetWriter, "_encode", staticmethod(failing))
    with pytest.raises(OSError, match="disk full"):
        execute(table, _task(data, []))
    assert _parquet_files(root) == before


def test_dictionary_encoding_only_for_columns_whose_values_repeat(sqlite_catalog: Any) -> None:
    """Unique ids and free text are written plain; a 12-value column, an all-NULL column and a
    nested column keep their dictionary; the rows read back unchanged."""
    sqlite_catalog.create_namespace("db")
    n = 20_000
    rows = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "category": pa.array([f"c{i % 12}" for i in range(n)]),
            "note": pa.array([f"note-{i * 7919 % 100_003}" for i in range(n)]),
            "empty": pa.array([None] * n, pa.string()),
        }
    )
    flat = sqlite_catalog.create_table("db.flat", schema=rows.schema)
    nested = sqlite_catalog.create_table(
        "db.nested", schema=rows.append_column("tags", pa.array([[f"t{i % 3}"] for i in range(n)])).schema
    )
    for table, data in (
        (flat, rows),
        (nested, rows.append_column("tags", pa.array([[f"t{i % 3}"] for i in range(n)]))),
    ):
        for k in range(4):
            table.append(data.slice(k * n // 4, n // 4))
    dictionary = {}
    for table in (flat, nested):
        table = sqlite_catalog.load_table(table.name())
        before = content_hash(read_table(table))
        data, deletes = file_refs(table)
        result = execute(table, _task(data, deletes))
        [output] = result.outputs
        meta = pq.ParquetFile(_local(output["file_path"])).metadata.row_group(0)
        dictionary[table.name()[-1]] = {
            meta.column(i).path_in_schema: meta.column(i).has_dictionary_page for i in range(meta.num_columns)
        }
        assert content_hash(pq.read_table(_local(output["file_path"]))) == before
    assert dictionary["flat"] == {"id": False, "category": True, "note": False, "empty": True}
    assert all(dictionary["nested"].values())  # nested columns: every column, as Parquet's default
