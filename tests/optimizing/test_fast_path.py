"""The delete-free fast path of reads: many small same-schema files in a few pyarrow dataset scans."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import ID_CAT_S_X_SCHEMA
from pyiceberg.catalog import Catalog
from pyiceberg.types import LongType

from airflow_provider_amoro.optimizing.execute import execute
from airflow_provider_amoro.optimizing.model import FileRef, RewriteTask
from airflow_provider_amoro.optimizing.read import InputFileError, TaskDeletes, fast_scan
from airflow_provider_amoro.optimizing.read.fast_scan import ScanRun
from airflow_provider_amoro.testing.deletes import add_position_deletes, file_refs
from airflow_provider_amoro.testing.reader import content_hash, read_table

read_module = importlib.import_module("airflow_provider_amoro.optimizing.read")


def _rows(start: int, n: int) -> pa.Table:
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "cat": pa.array([f"c{i % 3}" for i in ids]),
            "s": pa.array([f"row-{i:08d}" if i % 7 else None for i in ids]),
            "x": ids / 3.0,
        },
        schema=ID_CAT_S_X_SCHEMA,
    )


def _local(path: str) -> str:
    return path.removeprefix("file://")


def _parquet_files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*.parquet")}


def _task(data: list[FileRef], deletes: list[FileRef]) -> RewriteTask:
    return RewriteTask(
        task_id=0,
        kind="major",
        spec_id=data[0].spec_id,
        partition=data[0].partition,
        partition_path="",
        rewrite_data_files=data,
        delete_files=deletes,
    )


def _small_files_table(catalog: Catalog, tmp_path: Path, files: int = 120, rows: int = 50) -> Any:
    """``files`` tiny Parquet files registered in one commit (add_files: ids by name mapping),
    plus two files written by pyiceberg (field ids in the files, another physical schema)."""
    catalog.create_namespace("db")
    table = catalog.create_table(
        "db.t", schema=ID_CAT_S_X_SCHEMA, properties={"self-optimizing.target-size": "1048576"}
    )
    src = tmp_path / "src"
    src.mkdir()
    paths = []
    for k in range(files):
        path = src / f"part-{k:05d}.parquet"
        pq.write_table(_rows(k * rows, rows), path)
        paths.append(path.as_uri())
    table.add_files(paths)
    table.append(_rows(files * rows, 3 * rows))
    table.append(_rows((files + 3) * rows, 2 * rows))
    return table


def test_delete_free_small_files_take_one_scan_and_keep_every_row(
    sqlite_catalog: Catalog, tmp_path: Path, monkeypatch: Any
) -> None:
    table = _small_files_table(sqlite_catalog, tmp_path)
    expected = read_table(table)
    data, deletes = file_refs(table)
    assert not deletes and len(data) == 122
    index = TaskDeletes.load(table, data, [])
    segments = list(fast_scan.segments(table, data, index, table.schema(), {}))
    assert all(isinstance(s, ScanRun) for s in segments)
    assert len(segments) <= 2 * 3  # per window (32, 64, 26 files): one run per physical schema
    assert sum(len(s.files) for s in segments) == len(data)

    def no_per_file_reads(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the per-file path was used for a delete-free task")

    monkeypatch.setattr(read_module, "read_files", no_per_file_reads)
    before = _parquet_files(tmp_path)
    result = execute(table, _task(data, deletes))
    outputs = [_local(o["file_path"]) for o in result.outputs]
    got = pa.concat_tables([pq.read_table(p) for p in outputs])
    assert result.input_records == result.output_records == expected.num_rows == 122 * 50 + 150
    assert got.num_rows == expected.num_rows
    assert content_hash(got) == content_hash(expected)
    assert _parquet_files(tmp_path) == before | set(outputs)


def test_files_with_deletes_or_evolved_schema_keep_the_per_file_path(
    sqlite_catalog: Catalog, tmp_path: Path
) -> None:
    table = _small_files_table(sqlite_catalog, tmp_path, files=30, rows=20)
    data, _ = file_refs(table)
    by_path = {d.path: d for d in data}
    hit = sorted(by_path)[5]
    table = add_position_deletes(table, {hit: [0, 3, 19]})
    with table.update_schema() as update:
        update.add_column("extra", LongType())
    table.append(
        pa.table(
            {
                **{n: _rows(10_000, 40).column(n) for n in ID_CAT_S_X_SCHEMA.names},
                "extra": pa.array(range(40), pa.int64()),
            }
        )
    )
    expected = read_table(table)
    data, deletes = file_refs(table)
    index = TaskDeletes.load(table, data, deletes)
    segments = list(fast_scan.segments(table, data, index, table.schema(), {}))
    slow = [d.path for s in segments if isinstance(s, list) for d in s]
    fast = [d.path for s in segments if isinstance(s, ScanRun) for d in s.files]
    # every old file lacks the added column (projection needed): only the new file scans fast
    assert hit in slow and len(fast) == 1 and len(slow) == len(data) - 1
    result = execute(table, _task(data, deletes))
    got = pa.concat_tables([pq.read_table(_local(o["file_path"])) for o in result.outputs])
    assert got.num_rows == expected.num_rows == 30 * 20 + 5 * 20 - 3 + 40
    assert content_hash(got) == content_hash(expected)


@pytest.mark.parametrize("whole", [True, False], ids=["read-whole", "footer-then-scan"])
@pytest.mark.parametrize("failure", ["short", "missing", "not-parquet", "corrupt-pages"])
def test_broken_file_in_the_fast_path_fails_cleanly(
    sqlite_catalog: Catalog, tmp_path: Path, failure: str, whole: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small files are read whole with their footer (one open), larger ones opened twice
    monkeypatch.setattr(fast_scan, "WHOLE_FILE_BYTES", 1 << 30 if whole else 0)
    table = _small_files_table(sqlite_catalog, tmp_path, files=40, rows=2000)
    data, deletes = file_refs(table)
    broken = sorted(data, key=lambda d: d.path)[17]
    if failure == "short":
        data = [
            FileRef(**{**d.to_dict(), "record_count": d.record_count + 1}) if d is broken else d for d in data
        ]
        match = f"{broken.path}: has 2000 rows, the plan expected 2001"
    elif failure == "missing":
        os.remove(_local(broken.path))
        match = f"cannot read input file {broken.path}"
    elif failure == "not-parquet":
        Path(_local(broken.path)).write_bytes(b"PAR1 this is not parquet PAR1")
        match = f"{broken.path}: not a readable Parquet file"
    else:  # valid footer, garbage pages: only the scan itself finds out
        raw = bytearray(Path(_local(broken.path)).read_bytes())
        footer = int.from_bytes(raw[-8:-4], "little")
        end = len(raw) - 8 - footer
        raw[4:end] = bytes([0xFF]) * (end - 4)
        Path(_local(broken.path)).write_bytes(bytes(raw))
        match = f"{broken.path}: corrupt Parquet data"
    before = _parquet_files(tmp_path)
    with pytest.raises(InputFileError, match=match):
        execute(table, _task(data, deletes))
    assert _parquet_files(tmp_path) <= before


def _scan_threads() -> list[Any]:
    import threading

    return [t for t in threading.enumerate() if t.name == "amoro-scan-ahead"]


def test_fast_path_reads_a_bounded_distance_ahead_of_a_slow_writer(
    sqlite_catalog: Catalog, tmp_path: Path, monkeypatch: Any
) -> None:
    """A writer slower than the scan (the usual case: the encoder is the bottleneck) must not make
    the read side hold most of the task in memory. One dataset scan over all files decoded ahead
    without bound (about 50 MB of these 110 MB of rows in flight); the grouped scan behind a
    byte-bounded queue holds about the queue's bytes plus one group. The limits are lowered here
    so that the bound is far below what an unbounded scan holds."""
    import time

    monkeypatch.setattr(fast_scan, "SCAN_GROUP_BYTES", 1024 * 1024)
    monkeypatch.setattr(fast_scan, "SCAN_AHEAD_BYTES", 4 * 1024 * 1024)
    table = _small_files_table(sqlite_catalog, tmp_path, files=60, rows=40_000)
    data, _ = file_refs(table)
    index = TaskDeletes.load(table, data, [])
    runs = [s for s in fast_scan.segments(table, data, index, table.schema(), {}) if isinstance(s, ScanRun)]
    assert sum(len(r.files) for r in runs) >= 60
    pool = pa.default_memory_pool()
    base = pool.bytes_allocated()
    in_flight = 0
    rows = 0
    total_bytes = 0
    for run in runs:
        for batch in run.batches(16_384):
            in_flight = max(in_flight, pool.bytes_allocated() - base)
            rows += batch.num_rows
            total_bytes += batch.nbytes
            time.sleep(0.01)  # the slow writer
            del batch
    assert rows == sum(d.record_count for d in data)
    print(f"in flight {in_flight / 2**20:.1f} MB of {total_bytes / 2**20:.0f} MB")
    assert total_bytes > 90 * 2**20
    # 4 MB queued + one group of 1 MB of Parquet (about 5 MB of rows) + the batch in hand
    assert in_flight < 20 * 2**20, in_flight / 2**20
    assert not _scan_threads()


def test_fast_path_producer_stops_when_the_reader_stops_early(
    sqlite_catalog: Catalog, tmp_path: Path
) -> None:
    table = _small_files_table(sqlite_catalog, tmp_path, files=40, rows=20_000)
    data, _ = file_refs(table)
    index = TaskDeletes.load(table, data, [])
    run = next(
        s for s in fast_scan.segments(table, data, index, table.schema(), {}) if isinstance(s, ScanRun)
    )
    batches = run.batches(4096)
    first = next(batches)
    assert first.num_rows > 0 and len(_scan_threads()) == 1
    batches.close()  # e.g. the writer failed: the generator is closed mid-scan
    assert not _scan_threads()


@pytest.mark.parametrize("whole", [True, False], ids=["read-whole", "footer-then-scan"])
def test_a_column_dropped_from_the_table_is_not_read_from_its_old_files(
    sqlite_catalog: Catalog, tmp_path: Path, whole: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small files written before a column was dropped still hold it: the rewrite reads only the
    table's columns, and the rows match the table read by the independent reader."""
    monkeypatch.setattr(fast_scan, "WHOLE_FILE_BYTES", 1 << 30 if whole else 0)
    table = _small_files_table(sqlite_catalog, tmp_path, files=40, rows=30)
    with table.update_schema() as update:
        update.delete_column("cat")
    table = sqlite_catalog.load_table("db.t")
    expected = read_table(table)
    assert "cat" not in expected.column_names
    data, deletes = file_refs(table)
    index = TaskDeletes.load(table, data, deletes)
    segments = list(fast_scan.segments(table, data, index, table.schema(), {}))
    assert sum(len(s.files) for s in segments if isinstance(s, ScanRun)) >= 40  # the fast path
    result = execute(table, _task(data, deletes))
    got = pa.concat_tables([pq.read_table(_local(o["file_path"])) for o in result.outputs])
    assert got.column_names == ["id", "s", "x"]
    assert got.num_rows == expected.num_rows >= 40 * 30
    assert content_hash(got) == content_hash(expected)
