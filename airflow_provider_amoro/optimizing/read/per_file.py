"""The per-file read path: files with deletes or evolved schemas, each opened, filtered and projected.

Small files (up to :data:`PREFETCH_FILE_BYTES`) are read whole ahead of time by a few threads,
each file on one thread and several at once, at most :data:`PREFETCH_BYTES` in flight; large files
stream on the consumer's thread with pyarrow's own parallel column decoding. Batches come out in
the order of the files either way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from airflow_provider_amoro.optimizing.model import FileRef
from airflow_provider_amoro.optimizing.read.deletes import TaskDeletes, apply_positions
from airflow_provider_amoro.optimizing.read.files import open_parquet
from airflow_provider_amoro.optimizing.read.projection import DEFAULT_BATCH_ROWS, FileReader, Projection

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

PREFETCH_FILE_BYTES = 8 * 1024 * 1024
"""Data files up to this size are read whole, ahead of time, on a small thread pool."""
PREFETCH_BYTES = 12 * 1024 * 1024
"""At most this many bytes of such files (plus one) are read ahead at once: about 3-4x as many
bytes of decoded Arrow rows wait for the writer (32 MB held ~120 MB of rows for 5 MB files)."""
PREFETCH_FILES = 16
"""At most this many files are read ahead at once."""
PREFETCH_THREADS = 4
"""Threads reading small files ahead."""


def read_data_file_batches(
    table: Table,
    data: FileRef,
    deletes: TaskDeletes | None = None,
    *,
    schema: Schema | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    projections: dict[str, Projection] | None = None,
    use_threads: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Stream one data file's live rows (deletes from ``deletes`` applied), in the read schema.

    Args:
        table: the table.
        data: the data file.
        deletes: the task's delete index (None: no deletes).
        schema: the read schema (default: ``deletes.schema`` or the table's current schema).
        batch_size: rows per batch read.
        projections: a cache of schema projections shared by the files of one read (one schema).
        use_threads: decode the file's columns in parallel.

    Raises:
        InputFileError: missing, unreadable or short data file.
    """
    schema = schema or (deletes.schema if deletes is not None else table.schema())
    deleted = deletes.deleted_positions(data) if deletes is not None else np.empty(0, dtype=np.int64)
    if data.record_count > 0 and np.count_nonzero(deleted < data.record_count) == data.record_count:
        # Every row is deleted: still verify the file exists, without decoding it.
        stream, _ = open_parquet(table, data.path)
        stream.close()
        return
    reader = FileReader(table, data, schema, projections=projections)
    for start, batch in reader.batches(batch_size, use_threads):
        live = apply_positions(batch, start, deleted)
        if live.num_rows:
            yield live


def read_files(
    table: Table,
    data_files: Sequence[FileRef],
    index: TaskDeletes,
    schema: Schema,
    batch_size: int,
    projections: dict[str, Projection],
) -> Iterator[pa.RecordBatch]:
    """The per-file path: each file opened, deletes applied, projected on its own."""

    def read_whole(data: FileRef) -> list[pa.RecordBatch]:
        return list(
            read_data_file_batches(
                table, data, index, schema=schema, batch_size=batch_size, projections=projections
            )
        )

    # Small files are read ahead by a few threads (each file on one thread, several files at once,
    # at most PREFETCH_BYTES of them in flight); large files stream on this thread with pyarrow's
    # own parallel column decoding. Batches come out in data_files order either way.
    pool = ThreadPoolExecutor(max_workers=PREFETCH_THREADS) if len(data_files) > 1 else None
    queue: deque[tuple[FileRef, Future[list[pa.RecordBatch]] | None]] = deque()
    upcoming = iter(data_files)
    in_flight = 0

    def fill() -> None:
        nonlocal in_flight
        while len(queue) < PREFETCH_FILES and in_flight < PREFETCH_BYTES:
            data = next(upcoming, None)
            if data is None:
                return
            if pool is not None and data.size_bytes <= PREFETCH_FILE_BYTES:
                queue.append((data, pool.submit(read_whole, data)))
                in_flight += data.size_bytes
            else:
                queue.append((data, None))
                return  # a large file next: stream it before reading further ahead

    try:
        fill()
        while queue:
            data, future = queue.popleft()
            if future is None:
                fill()
                yield from read_data_file_batches(
                    table, data, index, schema=schema, batch_size=batch_size, projections=projections
                )
            else:
                batches = future.result()
                in_flight -= data.size_bytes
                fill()
                yield from batches
            fill()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
