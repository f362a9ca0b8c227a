"""plan -> execute -> commit on real tables: no row lost or resurrected, deletes merged, files compacted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from catalogs import on_catalogs
from pyiceberg.catalog import Catalog

from airflow_provider_amoro.optimizing.commit import commit
from airflow_provider_amoro.optimizing.execute import execute
from airflow_provider_amoro.optimizing.model import OptimizingPlan
from airflow_provider_amoro.optimizing.plan import plan
from airflow_provider_amoro.testing.deletes import (
    add_equality_deletes,
    add_position_deletes,
    file_refs,
    upsert_with_equality_deletes,
)
from airflow_provider_amoro.testing.reader import content_hash, read_table

SCHEMA = pa.schema([("id", pa.int64()), ("cat", pa.string()), ("v", pa.string())])


def _rows(ids: np.ndarray | list[int], tag: str = "v") -> pa.Table:
    ids = list(ids)
    return pa.table(
        {"id": ids, "cat": [f"c{i % 2}" for i in ids], "v": [f"{tag}{i}" for i in ids]}, schema=SCHEMA
    )


def _run(table: Any, optimizing: OptimizingPlan, between: Any = None) -> Any:
    results = [execute(table, task) for task in optimizing.tasks]
    if between is not None:
        between()
    return commit(table, optimizing, results)


def _cdc_table(catalog: Any) -> Any:
    catalog.create_namespace("db")
    table = catalog.create_table(
        "db.t", schema=SCHEMA, properties={"self-optimizing.target-size": str(256 * 1024)}
    )
    with table.update_spec() as spec:
        spec.add_identity("cat")
    for k in range(6):
        table.append(_rows(range(k * 500, (k + 1) * 500)))
        upsert_with_equality_deletes(table, _rows(range(k * 100, k * 100 + 20), tag=f"u{k}-"), ["id", "cat"])
    data, _ = file_refs(table)
    add_position_deletes(table, {data[0].path: [0, 1, 2], data[1].path: [3]})
    return table


def test_full_optimizing_keeps_every_row(catalog: Any) -> None:
    table = _cdc_table(catalog)
    before = read_table(table)
    data_before, deletes_before = file_refs(table)

    optimizing = plan(table, "full")
    assert optimizing.tasks
    result = _run(table, optimizing)

    table = catalog.load_table("db.t")
    after = read_table(table)
    assert after.num_rows == before.num_rows
    assert content_hash(after) == content_hash(before)
    data_after, deletes_after = file_refs(table)
    assert len(data_after) < len(data_before)
    assert deletes_after == [] and len(deletes_before) > 0
    assert result.added_records == before.num_rows


def test_equality_delete_committed_during_execution_still_applies(sqlite_catalog: Any) -> None:
    table = _cdc_table(sqlite_catalog)
    optimizing = plan(table, "full")
    concurrent = sqlite_catalog.load_table("db.t")

    def delete_while_running() -> None:
        add_equality_deletes(concurrent, _rows([7, 8, 1999]), ["id"])

    _run(table, optimizing, between=delete_while_running)
    table = sqlite_catalog.load_table("db.t")
    ids = read_table(table).column("id").to_pylist()
    assert 7 not in ids and 8 not in ids and 1999 not in ids
    assert len(ids) == len(set(ids))


def test_minor_rewrite_pos_merges_deletes_of_a_large_file(sqlite_catalog: Any) -> None:
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table(
        "db.t", schema=SCHEMA, properties={"self-optimizing.target-size": str(16 * 1024)}
    )
    noise = np.random.default_rng(0).integers(0, 2**60, 5000).tolist()
    table.append(pa.table({"id": list(range(5000)), "cat": ["c"] * 5000, "v": [f"{x:032x}" for x in noise]}))
    big = file_refs(table)[0][0]
    add_position_deletes(table, {big.path: [1, 4000]})
    add_position_deletes(table, {big.path: [2]})
    add_equality_deletes(table, _rows([10, 11]), ["id"])
    before = read_table(table)

    optimizing = plan(table)
    assert optimizing.kind == "minor"
    assert [len(t.rewrite_pos_data_files) for t in optimizing.tasks] == [1]
    result = _run(table, optimizing)

    table = sqlite_catalog.load_table("db.t")
    assert content_hash(read_table(table)) == content_hash(before)
    data, deletes = file_refs(table)
    assert [d.path for d in data] == [big.path]  # the data file is kept as it is
    assert [(d.content, d.record_count) for d in deletes] == [("position_deletes", 5)]
    assert result.removed_delete_files == 3 and result.added_delete_files == 1


@on_catalogs("s3-fsspec", "s3")
def test_optimizing_on_s3(catalog: Catalog) -> None:
    warehouse = catalog.properties["warehouse"]
    table = _cdc_table(catalog)
    before = read_table(table)
    optimizing = plan(table, "full")
    results = [execute(table, task) for task in optimizing.tasks]
    assert all(o["file_path"].startswith(f"{warehouse}/") for r in results for o in r.outputs)
    commit(table, optimizing, results)
    table = catalog.load_table("db.t")
    assert content_hash(read_table(table)) == content_hash(before)
    assert file_refs(table)[1] == []


def test_day_and_bucket_partitions_end_to_end(sqlite_catalog: Any) -> None:
    import datetime as dt

    from pyiceberg.transforms import BucketTransform, DayTransform

    schema = pa.schema(
        [("id", pa.int64()), ("ts", pa.timestamp("us")), ("d", pa.date32()), ("v", pa.string())]
    )
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.t", schema=schema)
    with table.update_spec() as spec:
        spec.add_field("ts", DayTransform(), "ts_day")
        spec.add_field("id", BucketTransform(3), "id_bucket")
        spec.add_identity("d")
    base = dt.datetime(2024, 3, 1)

    def rows(ids: range) -> pa.Table:
        return pa.table(
            {
                "id": list(ids),
                "ts": [base + dt.timedelta(hours=7 * i) for i in ids],
                "d": [dt.date(2024, 1, 1 + i % 2) for i in ids],
                "v": [f"v{i}" for i in ids],
            },
            schema=schema,
        )

    for k in range(4):
        table.append(rows(range(k * 40, k * 40 + 40)))
    add_equality_deletes(table, rows(range(10, 20)), ["id"])
    data, _ = file_refs(table)
    add_position_deletes(table, {data[0].path: [0], data[5].path: [0]})
    before = read_table(table)

    optimizing = plan(table, "full")
    _run(table, optimizing)

    table = sqlite_catalog.load_table("db.t")
    assert content_hash(read_table(table)) == content_hash(before)
    data_after, deletes_after = file_refs(table)
    assert deletes_after == [] and len(data_after) < len(data)
    scanned = table.scan(row_filter="d = '2024-01-02' and id >= 100").to_arrow()
    assert sorted(scanned.column("id").to_pylist()) == sorted(
        r["id"] for r in before.to_pylist() if r["d"] == dt.date(2024, 1, 2) and r["id"] >= 100
    )
