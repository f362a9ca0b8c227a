"""The fast path: delete-free files whose schema is the read schema, read without per-file projection.

The data files that no delete touches have their Parquet footers read at once on a few threads
and their row counts checked against the plan. Consecutive such files whose physical schema maps
to the read schema directly by field id (:attr:`Projection.direct`) are read by threaded
multi-file ``pyarrow.dataset`` scans over fragments that keep those footers (no second footer
read, no per-file Python work, string offsets widened by the scan's own threads), one group of
about :data:`SCAN_GROUP_BYTES` of files at a time, on a producer thread at most
:data:`SCAN_AHEAD_BYTES` of rows ahead of the writer (a single scan over all files would decode far
ahead of the encoder and hold most of the task in memory); the rows they yield are counted against
the plan once more. Files with deletes or evolved schemas, and FileIOs that are not pyiceberg's
``PyArrowFileIO``, go to the per-file path (:mod:`.per_file`). Files go in windows (32 files,
doubling up to 512): the next window's footers are read while the current one is scanned, so
footer reads overlap the scan as in a plain dataset scan, and at most two windows of footers are
held. Small files (up to :data:`WHOLE_FILE_BYTES`) are read whole with one open and decoded on the
footer threads themselves by a ``ParquetFile`` (:class:`DecodedFile`): for files of a few KB, as a
streaming writer leaves them, a dataset scan costs more per file than the rows. Errors stay per
file: a missing, unreadable or short file fails before any row of its window is read, a corrupt
page fails the scan (or the decoding) and names its file.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from airflow_provider_amoro.optimizing.locations import native_location
from airflow_provider_amoro.optimizing.model import FileRef
from airflow_provider_amoro.optimizing.read.deletes import TaskDeletes
from airflow_provider_amoro.optimizing.read.files import InputFileError
from airflow_provider_amoro.optimizing.read.projection import Projection, projection_for

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

FOOTER_THREADS = 8
"""Threads reading the Parquet footers of the delete-free files of a task (fast path), on remote
storage (latency overlaps); on a local filesystem one per core (:func:`_footer_threads`)."""
SCAN_GROUP_BYTES = 8 * 1024 * 1024
"""Delete-free input files are scanned in groups of about this many (Parquet) bytes."""
SCAN_AHEAD_BYTES = 32 * 1024 * 1024
"""Bytes of decoded batches the scan of delete-free inputs keeps ready ahead of the writer."""
FOOTER_CHUNK = 16
"""Footers read by one thread task (fewer, larger thread tasks: less Python overhead per file)."""
FIRST_WINDOW = 32
"""Files in the first window of the fast path; windows double up to :data:`MAX_WINDOW`."""
MAX_WINDOW = 512
"""At most this many files per fast-path window."""
COALESCE_BYTES = 4 * 1024 * 1024
"""Consecutive small batches of a scan are handed over concatenated, up to this many bytes."""
WHOLE_FILE_BYTES = 64 * 1024
"""Delete-free files up to this size are read whole with their footer (one open per file) and
decoded on the footer threads. It pays for tiny files (5,000 files of 2.5 KB: a task's execute
2.0-2.7 s -> 1.2-1.5 s); for 100 KB files, read whole and held for a dataset scan, it cost more CPU
and about 70 MB more peak RSS per task than opening them twice, hence the low bound."""
WHOLE_FILE_WINDOW_BYTES = 8 * 1024 * 1024
"""At most this many bytes of such files are read whole per window (two windows are held at most,
decoded); the rest of the window's files are scanned. 1,000 files of 12 KB: 0.43-0.50 s per task
with 4 MB (a third of each 512-file window scanned), 0.37-0.47 s with 8 MB."""


@dataclass
class ScanRun:
    """Consecutive delete-free data files with one physical schema that needs no projection work.

    They are read by threaded multi-file ``pyarrow.dataset`` scans of a few files each, on a
    producer thread at most 32 MB of rows ahead of the writer (the fast path, :func:`_bounded_scan`): their
    footers were already read (and verified against the plan's record counts), and the fragments
    keep them, so the scans do not read them again.
    """

    files: list[FileRef]
    fragments: list[ds.Fragment | DecodedFile]
    filesystem: pafs.FileSystem
    projection: Projection

    def batches(self, batch_size: int) -> Iterator[pa.RecordBatch]:
        """Yield the rows of every file, in file order, in the requested schema.

        Raises:
            InputFileError: a file is corrupt, or the files hold another number of rows than planned.
        """
        # The dataset schema is the requested Arrow schema itself: the projection is direct (same
        # names and order), so the scan's own threads relabel and widen string offsets.
        target = self.projection.target
        expected = sum(d.record_count for d in self.files)
        rows = 0
        try:
            for batch in _bounded_scan(self._groups(), target, self.filesystem, batch_size):
                if batch.num_rows:
                    rows += batch.num_rows
                    yield batch if batch.schema.equals(target) else self.projection.apply(batch, {})
        except (pa.ArrowException, OSError) as exc:
            raise InputFileError(self._culprit(str(exc)), f"corrupt Parquet data ({exc})") from exc
        if rows != expected:  # the footers matched the plan: only a file changed meanwhile gets here
            raise InputFileError(
                self.files[0].path
                if len(self.files) == 1
                else f"{self.files[0].path} (+{len(self.files) - 1})",
                f"the files hold {rows} rows, the plan expected {expected}",
            )

    def _groups(self) -> list[list[ds.Fragment | DecodedFile]]:
        """The fragments in consecutive groups of about :data:`SCAN_GROUP_BYTES` (at least one file),
        decoded files and fragments to scan never in one group."""
        groups: list[list[ds.Fragment | DecodedFile]] = []
        size = 0
        for data, fragment in zip(self.files, self.fragments, strict=True):
            decoded = isinstance(fragment, DecodedFile)
            if (
                not groups
                or size + data.size_bytes > SCAN_GROUP_BYTES
                or decoded != isinstance(groups[-1][0], DecodedFile)
            ):
                groups.append([])
                size = 0
            groups[-1].append(fragment)
            size += data.size_bytes
        return groups

    def _culprit(self, message: str) -> str:
        """The file the scan failed on: named in ``message``, else found by reading each file again
        (only on this error path)."""
        for data, fragment in zip(self.files, self.fragments, strict=True):
            if isinstance(fragment, ds.Fragment) and fragment.path and fragment.path in message:
                return data.path
        for data, fragment in zip(self.files, self.fragments, strict=True):
            if isinstance(fragment, DecodedFile):
                continue  # decoded when its footer was read: not what failed
            try:
                for _ in fragment.to_batches(columns=self.projection.target.names, use_threads=False):
                    pass
            except (pa.ArrowException, OSError):
                return data.path
        return f"one of {len(self.files)} files starting with {self.files[0].path}"


def _bounded_scan(
    groups: list[list[ds.Fragment | DecodedFile]],
    schema: pa.Schema,
    filesystem: pafs.FileSystem,
    batch_size: int,
) -> Iterator[pa.RecordBatch]:
    """The batches of every group's threaded dataset scan, in order, read on a producer thread at
    most :data:`SCAN_AHEAD_BYTES` of decoded rows ahead of the consumer.

    A dataset scan over many files decodes ahead of a slow consumer without bound (its
    ``fragment_readahead``/``batch_readahead`` do not cap it: 250 MB in flight for 25 files of 5 MB
    behind a Parquet encoder), so each scan covers one small group of files and the producer
    waits for the consumer before it reads further. Errors of the scan are raised in the
    consumer; closing the consumer stops the producer.
    """

    ready: deque[pa.RecordBatch] = deque()
    held = [0]  # bytes of the batches in ``ready``
    state: dict[str, Any] = {"done": False, "error": None, "stop": False}
    cond = threading.Condition()

    def produce() -> None:
        try:
            fmt = _fast_format()
            for fragments in groups:
                for batch in _coalesced(
                    _group_batches(fragments, schema, fmt, filesystem, batch_size), batch_size
                ):
                    with cond:
                        while ready and held[0] + batch.nbytes > SCAN_AHEAD_BYTES and not state["stop"]:
                            cond.wait()
                        if state["stop"]:
                            return
                        ready.append(batch)
                        held[0] += batch.nbytes
                        cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            with cond:
                state["error"] = exc
        finally:
            with cond:
                state["done"] = True
                cond.notify_all()

    producer = threading.Thread(target=produce, name="amoro-scan-ahead", daemon=True)
    producer.start()
    try:
        while True:
            with cond:
                while not ready and not state["done"]:
                    cond.wait()
                if ready:
                    batch = ready.popleft()
                    held[0] -= batch.nbytes
                    cond.notify_all()
                elif state["error"] is not None:
                    raise state["error"]
                else:
                    return
            yield batch
    finally:
        with cond:
            state["stop"] = True
            cond.notify_all()
        producer.join()


def _group_batches(
    group: list[ds.Fragment | DecodedFile],
    schema: pa.Schema,
    fmt: ds.ParquetFileFormat,
    filesystem: pafs.FileSystem,
    batch_size: int,
) -> Iterator[pa.RecordBatch]:
    """The rows of one group: the decoded files' tables, or a threaded dataset scan of fragments."""
    fragments = [f for f in group if isinstance(f, ds.Fragment)]
    if not fragments:
        # one copy into contiguous arrays here, on the producer thread, instead of the consumer
        # concatenating and relabelling one small batch per file
        tables = [d.rows for d in group if isinstance(d, DecodedFile)]
        yield from pa.concat_tables(tables).combine_chunks().to_batches(batch_size)
        return
    dataset = ds.FileSystemDataset(fragments, schema=schema, format=fmt, filesystem=filesystem)
    yield from dataset.to_batches(columns=schema.names, batch_size=batch_size, use_threads=True)


def _coalesced(batches: Iterator[pa.RecordBatch], batch_size: int) -> Iterator[pa.RecordBatch]:
    """``batches`` with consecutive small ones (one per small file) concatenated, up to
    ``batch_size`` rows or :data:`COALESCE_BYTES`: the consumer's per-batch work (handing over,
    buffering, counting) is then paid per few thousand rows, not per file."""
    small: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        small.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
        if rows >= batch_size or size >= COALESCE_BYTES:
            yield small[0] if len(small) == 1 else pa.concat_batches(small)
            small, rows, size = [], 0, 0
    if small:
        yield small[0] if len(small) == 1 else pa.concat_batches(small)


def _fast_format() -> ds.ParquetFileFormat:
    return ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))


def _dataset_paths(table: Table, data_files: Sequence[FileRef]) -> tuple[pafs.FileSystem, list[str]] | None:
    """The pyarrow filesystem and its paths for ``data_files`` (None: not all on one pyarrow FS)."""
    filesystem: pafs.FileSystem | None = None
    paths = []
    for data in data_files:
        located = native_location(table.io, data.path)
        if located is None:  # not pyiceberg's PyArrowFileIO
            return None
        fs, path = located
        if filesystem is None:
            filesystem = fs
        elif fs is not filesystem:
            return None
        paths.append(path)
    return (filesystem, paths) if filesystem is not None else None


class DecodedFile:
    """A small delete-free file read whole and decoded where its footer was checked.

    Decoding a 2.5 KB file through a dataset scan costs more than the rows (a scanner per group,
    a task per fragment); a ``ParquetFile`` on the file's bytes decodes it directly, on the footer
    threads, while the writer encodes what came before.
    """

    __slots__ = ("physical_schema", "rows")

    def __init__(self, rows: pa.Table, physical_schema: pa.Schema) -> None:
        self.rows = rows
        """The file's columns that the read schema names (by name), in its order."""
        self.physical_schema = physical_schema
        """Every column of the file (what the projection is chosen on)."""


def _footer(
    fmt: ds.ParquetFileFormat,
    filesystem: pafs.FileSystem,
    path: str,
    data: FileRef,
    whole: bool,
    names: Sequence[str],
) -> ds.Fragment | DecodedFile:
    """A fragment of ``data`` with its footer read (kept by the fragment) and its row count checked.

    ``whole``: read the whole (small) file with one open and decode its columns named in ``names``
    (the read schema's: a file may hold columns dropped from the table since) as a
    :class:`DecodedFile`.
    """
    try:
        if whole:
            with filesystem.open_input_file(path) as stream:
                parquet = pq.ParquetFile(stream.read_buffer())
            rows = parquet.metadata.num_rows
            if rows == data.record_count:
                return _decoded(parquet, data, names)
        else:
            fragment = fmt.make_fragment(path, filesystem=filesystem)
            rows = fragment.metadata.num_rows  # reads the footer: fails here for a missing or corrupt file
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(data.path, f"not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    if rows != data.record_count:
        raise InputFileError(data.path, f"has {rows} rows, the plan expected {data.record_count}")
    return fragment


def _decoded(parquet: pq.ParquetFile, data: FileRef, names: Sequence[str]) -> DecodedFile:
    physical = parquet.schema_arrow
    present = [name for name in names if physical.get_field_index(name) >= 0]
    try:
        return DecodedFile(parquet.read(columns=present, use_threads=False).select(present), physical)
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(data.path, f"corrupt Parquet data ({exc})") from exc


def _footers(
    fmt: ds.ParquetFileFormat,
    filesystem: pafs.FileSystem,
    items: Sequence[tuple[str, FileRef, bool]],
    names: Sequence[str],
) -> list[ds.Fragment | DecodedFile]:
    return [_footer(fmt, filesystem, path, data, whole, names) for path, data, whole in items]


def _footer_threads(filesystem: pafs.FileSystem) -> int:
    """Footer threads for ``filesystem``: on local disks more threads than cores only fight over the
    GIL (5,000 files of 2.5 KB on 2 cores: 1.4 s with 2 threads, 1.8-2.4 s with 8)."""
    if isinstance(filesystem, pafs.LocalFileSystem):
        return max(1, min(FOOTER_THREADS, os.cpu_count() or 1))
    return FOOTER_THREADS


def _read_whole(data_files: Sequence[FileRef], picked: Sequence[int]) -> set[int]:
    """The files of ``picked`` read whole with their footer: small ones, up to a byte budget."""
    whole: set[int] = set()
    budget = WHOLE_FILE_WINDOW_BYTES
    for i in picked:
        size = data_files[i].size_bytes
        if size <= WHOLE_FILE_BYTES and size <= budget:
            whole.add(i)
            budget -= size
    return whole


def segments(
    table: Table,
    data_files: Sequence[FileRef],
    index: TaskDeletes,
    schema: Schema,
    projections: dict[str, Projection],
) -> Iterator[ScanRun | list[FileRef]]:
    """``data_files`` cut, in order, into fast-path scan runs and lists for the per-file path.

    A file takes the fast path when no delete removes any of its rows and its physical schema maps
    to ``schema`` directly by field id (same columns, order and types: the usual case); files with
    deletes or evolved schemas keep the per-file path. Files go in windows (32 files, doubling up
    to :data:`MAX_WINDOW`): the footers of the next window are read on a thread pool while the
    current window is scanned, so footer reads overlap the scan as in a plain dataset scan.
    """
    clean = (
        [len(index.deleted_positions(d)) == 0 for d in data_files]
        if index.has_deletes
        else [True] * len(data_files)
    )
    source = _dataset_paths(table, data_files) if any(clean) else None
    if source is None:
        if data_files:
            yield list(data_files)
        return
    filesystem, paths = source
    fmt = _fast_format()
    names = [f.name for f in schema.fields]
    windows: list[range] = []
    start, size = 0, FIRST_WINDOW
    while start < len(data_files):
        windows.append(range(start, min(start + size, len(data_files))))
        start, size = start + size, min(size * 2, MAX_WINDOW)
    pool = ThreadPoolExecutor(max_workers=_footer_threads(filesystem))

    def submit(window: range) -> list[tuple[list[int], Future[list[ds.Fragment | DecodedFile]]]]:
        picked = [i for i in window if clean[i]]
        whole = _read_whole(data_files, picked)
        chunks = [picked[k : k + FOOTER_CHUNK] for k in range(0, len(picked), FOOTER_CHUNK)]
        return [
            (
                chunk,
                pool.submit(
                    _footers, fmt, filesystem, [(paths[i], data_files[i], i in whole) for i in chunk], names
                ),
            )
            for chunk in chunks
        ]

    ahead = deque(submit(w) for w in windows[:2])
    try:
        for k, window in enumerate(windows):
            fragments: dict[int, ds.Fragment | DecodedFile] = {}
            for chunk, future in ahead.popleft():
                fragments.update(zip(chunk, future.result(), strict=True))
            if k + 2 < len(windows):
                ahead.append(submit(windows[k + 2]))
            yield from _window_segments(
                table,
                [data_files[i] for i in window],
                [fragments.get(i) for i in window],
                filesystem,
                schema,
                projections,
            )
    finally:
        for futures in ahead:
            for _, future in futures:
                future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _window_segments(
    table: Table,
    data_files: Sequence[FileRef],
    fragments: Sequence[ds.Fragment | DecodedFile | None],
    filesystem: pafs.FileSystem,
    schema: Schema,
    projections: dict[str, Projection],
) -> Iterator[ScanRun | list[FileRef]]:
    """Runs of consecutive files (with footers read) that one scan reads; lists of the others."""
    run: ScanRun | None = None
    run_physical: pa.Schema | None = None
    slow: list[FileRef] = []
    for data, fragment in zip(data_files, fragments, strict=True):
        projection = None
        if fragment is not None:
            physical = fragment.physical_schema
            if run is not None and physical.equals(run_physical, check_metadata=True):
                projection = run.projection  # the usual case: the schema of the previous file
            else:
                projection = projection_for(table, data.path, physical, schema, projections)
                run_physical = physical
            if not (projection.direct and projection.columns):
                projection = None
        if projection is None or fragment is None:
            if run is not None:
                yield run
                run = None
            slow.append(data)
            continue
        if slow:
            yield slow
            slow = []
        if run is not None and run.projection is projection:
            run.files.append(data)
            run.fragments.append(fragment)
            continue
        if run is not None:
            yield run
        run = ScanRun([data], [fragment], filesystem, projection)
    if run is not None:
        yield run
    if slow:
        yield slow
