"""End-to-end: evaluate -> plan -> execute -> commit via ``optimize()``, checked by the independent reader.

Each test compares every row before and after (``content_hash`` of iceberg-rust's read) and the
file layout the optimizing kind promises.
"""

from __future__ import annotations

import datetime as dt
import random
import string
from typing import Any

import pyarrow as pa
import pytest
from builders import PARTITION_FIELDS, WIDE_SCHEMA
from catalogs import on_catalogs
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform
from s3_server import S3Server

from airflow_provider_amoro.optimizing.optimize import optimize
from airflow_provider_amoro.properties import PRODUCER_OPTIMIZE, SNAPSHOT_PRODUCER
from airflow_provider_amoro.testing.deletes import (
    add_equality_deletes,
    add_position_deletes,
    live_data_files,
    upsert_with_equality_deletes,
)
from airflow_provider_amoro.testing.reader import canonical_rows, content_hash, read_table

from .commit_support import live, snapshot_of

KB = 1024


def _rows(table: Table, ids: list[int], rng: random.Random, width: int = 8) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "v": ["".join(rng.choices(string.ascii_letters, k=width)) for _ in ids],
            "cat": [f"c{i % 3}" for i in ids],
            "d": [dt.date(2024, 1, 1 + i % 3) for i in ids],
        },
        schema=table.schema().as_arrow(),
    )


def _create(catalog: Catalog, name: str = "db.t", *, spec: PartitionSpec | None = None, **props: str) -> Any:
    catalog.create_namespace_if_not_exists("db")
    properties = {"self-optimizing.target-size": str(256 * KB), **props}
    return catalog.create_table(
        name, schema=WIDE_SCHEMA, partition_spec=spec or PartitionSpec(), properties=properties
    )


def _fill(
    table: Table, batches: int, per: int, *, seed: int = 7, width: int = 8, files_per_commit: int = 1
) -> None:
    """Append ``batches`` files of ``per`` rows, ``files_per_commit`` files per snapshot."""
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    rng = random.Random(seed)
    for first in range(0, batches, files_per_commit):
        chunk = range(first, min(batches, first + files_per_commit))
        if len(chunk) == 1:
            table.append(_rows(table, list(range(first * per, (first + 1) * per)), rng, width))
            continue
        with table.transaction() as tx, tx.update_snapshot().fast_append() as append:
            for b in chunk:
                data = _rows(table, list(range(b * per, (b + 1) * per)), rng, width)
                for df in _dataframe_to_data_files(tx.table_metadata, data, table.io):
                    append.append_data_file(df)


def _assert_optimize_snapshot(table: Table, kind: str) -> None:
    summary = table.current_snapshot().summary
    assert summary.operation.value == "replace"
    assert summary[SNAPSHOT_PRODUCER] == PRODUCER_OPTIMIZE
    assert summary["optimizing.kind"] == kind


def test_hundreds_of_tiny_appends_minor_to_a_few_target_size_files(catalog: Catalog) -> None:
    target = 256 * KB
    table = _create(catalog, **{"self-optimizing.max-task-size-bytes": str(4 * target)})
    _fill(table, batches=200, per=100, width=48, files_per_commit=20)  # 200 files of ~6 KB
    table = catalog.load_table("db.t")
    before = read_table(table)
    files_before = live(table)
    assert len(files_before) == 200 and all(f.size_bytes <= target / 8 for f in files_before)
    total = sum(f.size_bytes for f in files_before)

    result = optimize(table)

    assert result.kind == "minor"
    _assert_optimize_snapshot(table, "minor")
    after_files = live(table)
    assert content_hash(read_table(table)) == content_hash(before)
    assert read_table(table).num_rows == before.num_rows == 20_000
    # A few files near the target size: at most one smaller than half the target per task.
    assert 2 <= len(after_files) <= total // target + 1 + result.tasks
    small = [f for f in after_files if f.size_bytes < target / 2]
    assert len(small) <= result.tasks
    assert all(f.size_bytes <= target * 1.25 for f in after_files)
    assert result.health_after is not None and result.health_before is not None
    assert result.health_after > result.health_before
    assert result.input_records == result.output_records == 20_000
    assert result.snapshot_id == table.current_snapshot().snapshot_id
    assert result.to_dict()["kind"] == "minor"
    # Nothing left to do now.
    assert optimize(table).kind is None


def test_deletes_then_major_and_full_keep_rows_and_full_leaves_no_delete_files(catalog: Catalog) -> None:
    table = _create(catalog, **{"self-optimizing.major.trigger.duplicate-ratio": "0.05"})
    rng = random.Random(3)
    _fill(table, batches=6, per=200, width=32)
    table = catalog.load_table("db.t")
    files = sorted(live_data_files(table), key=lambda f: f.file_path)
    add_position_deletes(table, {files[0].file_path: list(range(0, 60)), files[1].file_path: [5, 6, 7]})
    add_equality_deletes(table, _rows(table, [250, 251, 900], rng), ["id"])
    upsert_with_equality_deletes(table, _rows(table, [10, 11, 1199, 5000], rng), ["id"])
    upsert_with_equality_deletes(table, _rows(table, [11, 12, 5001], rng), ["id"])
    table = catalog.load_table("db.t")
    before = canonical_rows(read_table(table))
    assert len(live(table, "position_deletes")) == 1 and len(live(table, "equality_deletes")) == 3

    major = optimize(table, "major")
    assert major.kind == "major"
    _assert_optimize_snapshot(table, "major")
    assert canonical_rows(read_table(table)) == before

    # More streaming changes, then a full optimizing clears every delete file.
    upsert_with_equality_deletes(table, _rows(table, [20, 21, 5002], rng), ["id"])
    files = sorted(live_data_files(table), key=lambda f: f.file_path)
    add_position_deletes(table, {files[-1].file_path: [0]})
    table = catalog.load_table("db.t")
    before = canonical_rows(read_table(table))
    assert live(table, "position_deletes") and live(table, "equality_deletes")

    full = optimize(table, "full")
    assert full.kind == "full"
    _assert_optimize_snapshot(table, "full")
    assert canonical_rows(read_table(table)) == before
    assert live(table, "position_deletes") == [] and live(table, "equality_deletes") == []
    summary = table.current_snapshot().summary
    assert summary["total-delete-files"] == "0"
    assert int(summary["total-records"]) == len(before)
    assert full.health_after == 100


def test_a_missing_data_file_fails_the_task_and_nothing_is_committed(sqlite_catalog: Catalog) -> None:
    table = _create(sqlite_catalog)
    _fill(table, batches=14, per=20)
    table = sqlite_catalog.load_table("db.t")
    victim = live(table)[3].path
    table.io.delete(victim)
    snap_before = table.current_snapshot().snapshot_id
    data_dir_before = _data_files_on_disk(table)
    with pytest.raises(Exception, match=r"(?i)missing|not found|no such file"):
        optimize(table, "minor")
    table.refresh()
    assert table.current_snapshot().snapshot_id == snap_before
    assert _data_files_on_disk(table) == data_dir_before  # no output left behind


def test_a_corrupt_data_file_fails_the_task_and_nothing_is_committed(sqlite_catalog: Catalog) -> None:
    table = _create(sqlite_catalog)
    _fill(table, batches=14, per=20)
    table = sqlite_catalog.load_table("db.t")
    victim = live(table)[5].path
    size = len(table.io.new_input(victim))
    with table.io.new_output(victim).create(overwrite=True) as out:
        out.write(b"\0" * size)
    snap_before = table.current_snapshot().snapshot_id
    data_dir_before = _data_files_on_disk(table)
    with pytest.raises(Exception):  # noqa: B017 - the reader's error type is the executor's business
        optimize(table, "minor", max_workers=2)
    table.refresh()
    assert table.current_snapshot().snapshot_id == snap_before
    assert _data_files_on_disk(table) == data_dir_before


def _data_files_on_disk(table: Table) -> set[str]:
    from pathlib import Path
    from urllib.parse import urlparse

    return {str(p) for p in (Path(urlparse(table.location()).path) / "data").rglob("*.parquet")}


def test_v1_table(catalog: Catalog) -> None:
    table = _create(catalog, **{"format-version": "1"})
    _fill(table, batches=15, per=20)
    table = catalog.load_table("db.t")
    before = content_hash(read_table(table))
    result = optimize(table)
    assert result.kind == "minor"
    assert table.metadata.format_version == 1
    _assert_optimize_snapshot(table, "minor")
    assert len(live(table)) == 1
    assert content_hash(read_table(table)) == before
    assert content_hash(table.scan().to_arrow()) == before


@pytest.mark.parametrize("field", list(PARTITION_FIELDS.values()), ids=list(PARTITION_FIELDS))
def test_partitioned_tables_with_deletes(sqlite_catalog: Catalog, field: PartitionField) -> None:
    table = _create(sqlite_catalog, spec=PartitionSpec(field))
    rng = random.Random(11)
    _fill(table, batches=13, per=30)
    table = sqlite_catalog.load_table("db.t")
    key = {"cat": ["id", "cat"], "id_bucket": ["id"], "d_day": ["id", "d"]}[field.name]
    upsert_with_equality_deletes(table, _rows(table, [1, 2, 3, 700], rng), key)
    table = sqlite_catalog.load_table("db.t")
    first = sorted(live_data_files(table), key=lambda f: f.file_path)[0]
    add_position_deletes(table, {first.file_path: [0, 1]})
    table = sqlite_catalog.load_table("db.t")
    before = canonical_rows(read_table(table))
    partitions_before = {repr(f.partition) for f in live(table)}
    assert len(partitions_before) == 3

    optimize(table, "minor")
    assert canonical_rows(read_table(table)) == before
    optimize(table, "full")
    assert canonical_rows(read_table(table)) == before
    after = live(table)
    assert {repr(f.partition) for f in after} == partitions_before
    assert len(after) == 3
    assert live(table, "position_deletes") == [] and live(table, "equality_deletes") == []


def test_evolved_spec_is_rewritten_into_the_current_spec(sqlite_catalog: Catalog) -> None:
    table = _create(sqlite_catalog)
    _fill(table, batches=8, per=20)
    with table.update_spec() as update:
        update.add_identity("cat")
    table = sqlite_catalog.load_table("db.t")
    rng = random.Random(5)
    for b in range(6):
        table.append(_rows(table, list(range(1000 + b * 10, 1010 + b * 10)), rng))
    table = sqlite_catalog.load_table("db.t")
    assert {f.spec_id for f in live(table)} == {0, 1}
    before = canonical_rows(read_table(table))
    result = optimize(table, "full")
    assert result.kind == "full"
    assert canonical_rows(read_table(table)) == before
    assert {f.spec_id for f in live(table)} == {1}
    # Tasks are per spec and partition: the old-spec rows land beside each new partition's output.
    assert len(live(table)) <= 6
    optimize(table, "full")
    assert canonical_rows(read_table(table)) == before
    assert len(live(table)) == 3


def test_threads_and_nothing_to_do(sqlite_catalog: Catalog) -> None:
    table = _create(
        sqlite_catalog,
        spec=PartitionSpec(
            PartitionField(source_id=3, field_id=1000, transform=IdentityTransform(), name="cat")
        ),
    )
    _fill(table, batches=15, per=30)
    table = sqlite_catalog.load_table("db.t")
    before = snapshot_of(table)
    messages: list[str] = []
    result = optimize(table, max_workers=3, log=messages.append)
    assert result.kind == "minor" and result.tasks == 3
    assert snapshot_of(table)[1] == before[1]
    assert any("committed snapshot" in m for m in messages)
    snap = table.current_snapshot().snapshot_id
    nothing = optimize(table)
    assert nothing.kind is None and nothing.snapshot_id is None
    assert table.current_snapshot().snapshot_id == snap
    with pytest.raises(ValueError, match="kind"):
        optimize(table, "huge")


@on_catalogs("s3", "s3-fsspec")
def test_s3_warehouse_end_to_end(catalog: Catalog, s3_server: S3Server) -> None:
    table = _create(catalog)
    rng = random.Random(1)
    _fill(table, batches=13, per=25)
    table = catalog.load_table("db.t")
    upsert_with_equality_deletes(table, _rows(table, [3, 4, 400], rng), ["id"])
    table = catalog.load_table("db.t")
    first = sorted(live_data_files(table), key=lambda f: f.file_path)[0]
    add_position_deletes(table, {first.file_path: [0]})
    table = catalog.load_table("db.t")
    assert table.location().startswith("s3://")
    before = canonical_rows(read_table(table))
    result = optimize(table, "full")
    assert result.kind == "full"
    assert canonical_rows(read_table(table)) == before
    assert len(live(table)) == 1 and live(table, None) == live(table)
    # Every file the table references is on the S3 server.
    fs = s3_server.s3fs()
    for ref in live(table):
        assert fs.exists(ref.path.removeprefix("s3://"))


@on_catalogs("s3-fsspec")
def test_s3_refused_commit_deletes_its_outputs(catalog: Catalog, s3_server: S3Server) -> None:
    from airflow_provider_amoro.optimizing.commit import CommitValidationError, commit
    from airflow_provider_amoro.optimizing.execute import execute
    from airflow_provider_amoro.optimizing.plan import plan as make_plan

    # fsspec IO (the catalog kind): see tests/s3_server.py on pyarrow's S3 deletes against rclone
    table = _create(catalog)
    _fill(table, batches=13, per=25)
    table = catalog.load_table("db.t")
    plan = make_plan(table)
    results = [execute(table, task) for task in plan.tasks]
    outputs = [o["file_path"] for r in results for o in r.outputs]
    fs = s3_server.s3fs()
    assert outputs and all(fs.exists(p.removeprefix("s3://")) for p in outputs)
    victim = plan.tasks[0].rewrite_data_files[0].path
    add_position_deletes(catalog.load_table("db.t"), {victim: [0]})
    expected = canonical_rows(read_table(catalog.load_table("db.t")))
    with pytest.raises(CommitValidationError):
        commit(table, plan, results)
    assert not any(fs.exists(p.removeprefix("s3://")) for p in outputs)
    assert canonical_rows(read_table(catalog.load_table("db.t"))) == expected
