"""Execute one rewrite task: read with deletes applied, write target-size Parquet files.

:func:`execute` is what an Airflow worker (Amoro's optimizer thread) runs for one
:class:`~airflow_provider_amoro.optimizing.model.RewriteTask`:

- ``rewrite_data_files`` are read with the task's deletes applied (:mod:`.read`; files no delete
  touches and whose schema is the table's by field id, the usual case, are read by one threaded
  multi-file pyarrow dataset scan, their row counts checked from their footers) and written anew
  as data files of about ``self-optimizing.target-size`` **Parquet** bytes. The writer rolls by
  bytes really written: it sizes each row group from the compressed bytes per row observed so far
  (first from the input files themselves, then from the file being written) and closes a file
  when its written bytes reach the target, so files land close to the target whatever the
  compression ratio. (pyiceberg's ``write.target-file-size-bytes`` counts in-memory Arrow bytes
  and produces files several times smaller.)
- Outputs are written in the table's **current** partition spec. When the task's spec is the
  current spec, every row belongs to the task's partition. When the task was planned on an older
  spec (a table whose partitioning evolved), rows are re-partitioned with the current spec's
  transforms and one rolling writer is kept per resulting partition; this is always correct, and
  it migrates old-spec data to the current layout as Iceberg's rewrite actions do.
- In ``full`` optimizing of a table with a sort order, the task's rows are sorted by it (held in
  memory: a task is bounded by ``max-task-size-bytes``) and the files get the order's id. An order
  that cannot be applied (a nested column, a transform pyarrow cannot compute) is logged and the
  rows are written unsorted, without an order id: sorting is an extra, it never blocks optimizing.
- ``rewrite_pos_data_files`` keep their data: every delete that still applies to them (position
  deletes, and equality deletes turned into positions by reading only the key columns) is written
  into ONE new position delete file, so the committer can drop the old delete files.

Any failure (missing or corrupt input, a full disk) deletes every file the task wrote and raises;
nothing partial is left behind. Outputs are returned as :func:`~.model.datafile_to_dict` dicts in a
:class:`~.model.TaskResult` with metrics, ready to travel as XCom to the committer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import (
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
    schema_to_pyarrow,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.table.sorting import NullOrder, SortDirection
from pyiceberg.transforms import IdentityTransform
from pyiceberg.typedef import Record

from airflow_provider_amoro.iceberg_compat import determine_partitions, get_parquet_writer_kwargs
from airflow_provider_amoro.optimizing.config import OptimizingConfig
from airflow_provider_amoro.optimizing.delete_files import new_file_location, write_position_delete_file
from airflow_provider_amoro.optimizing.model import (
    RewriteTask,
    TaskResult,
    datafile_to_dict,
    decode_partition,
    output_prefix,
)
from airflow_provider_amoro.optimizing.read import (
    DEFAULT_BATCH_ROWS,
    TaskDeletes,
    output_arrow_schema,
    read_task_batches,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from pyiceberg.io import OutputStream
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

logger = logging.getLogger(__name__)

ROW_GROUP_BYTES_PROPERTY = "write.parquet.row-group-size-bytes"
ROW_GROUP_BYTES_DEFAULT = 134217728
ROW_GROUP_ROWS_PROPERTY = "write.parquet.row-group-limit"
ROW_GROUP_ROWS_DEFAULT = 1048576
_MIN_ROW_GROUP_BYTES = 64 * 1024
ROW_GROUP_ARROW_BYTES = 64 * 1024 * 1024
"""At most this many in-memory (Arrow) bytes are buffered for one row group."""
_ROW_GROUPS_PER_FILE = 4
_CLOSE_SLACK = 0.02
ENCODE_THREADS = 2
"""Row groups of one task encoded at the same time (one per output file): reading and applying
deletes go on while a row group encodes, and several output files encode at once. 0: encode inline."""
PENDING_BUDGET_BYTES = 256 * 1024 * 1024
"""Arrow bytes buffered across the partition writers of one task before buffers are written early."""
TASK_MEMORY_POOL = "system"
"""Arrow memory pool a task allocates from (``system``, ``mimalloc``, ``jemalloc``; empty: leave
the process's default). pyarrow's default, mimalloc, keeps the memory a task frees: measured on a
115 MB task of 5 MB files, the process's peak RSS rose 348-404 MB above its start with mimalloc
and 303-312 MB with the system allocator, for the same Arrow peak (~230 MB) and less CPU. Not
applied when ``ARROW_DEFAULT_MEMORY_POOL`` is set: the operator's choice wins."""

DICTIONARY_SAMPLE_ROWS = 8192
"""Rows of an output file's first row group sampled to choose its dictionary-encoded columns."""
DICTIONARY_MAX_DISTINCT = 0.5
"""A column is dictionary-encoded when at most this share of its sampled non-null values are
distinct. Parquet writers start every column with a dictionary and fall back to plain pages when it
outgrows its limit (2 MB here): for a column of mostly distinct values (ids, timestamps, amounts,
free text) that is wasted work and a larger file. Measured on 400,000 rows of the benchmark's
events (three unique numeric columns, a free-text and a 12-value column): 0.24 s and 10.9 MB with a
dictionary on every column, 0.11 s and 9.0 MB with one on the 12-value column only."""

_pool_lock = threading.Lock()
_pool_users = [0]
_pool_saved: list[pa.MemoryPool] = []


@contextlib.contextmanager
def _task_memory_pool() -> Iterator[None]:
    """Make :data:`TASK_MEMORY_POOL` pyarrow's default pool while at least one task executes.

    Every Arrow buffer remembers the pool it came from, so buffers allocated before or after (or by
    another thread meanwhile) are freed correctly; the previous default comes back after the last
    task of the process ends.
    """
    name = TASK_MEMORY_POOL
    if not name or os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        yield
        return
    factories = {
        "system": pa.system_memory_pool,
        "mimalloc": pa.mimalloc_memory_pool,
        "jemalloc": pa.jemalloc_memory_pool,
    }
    with _pool_lock:
        if _pool_users[0] == 0:
            try:
                pool = factories[name]()
            except (KeyError, NotImplementedError):
                pool = None  # not built into this pyarrow: keep the default
            _pool_saved[:] = [pa.default_memory_pool()]
            if pool is not None:
                pa.set_memory_pool(pool)
        _pool_users[0] += 1
    try:
        yield
    finally:
        with _pool_lock:
            _pool_users[0] -= 1
            if _pool_users[0] == 0 and _pool_saved:
                pa.set_memory_pool(_pool_saved.pop())


def _target_size(table: Table, config: OptimizingConfig | None) -> int:
    if config is None:
        config = OptimizingConfig.from_properties(table.properties)
    return int(config.target_size)


def _int_property(props: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(props.get(name, default))
    except ValueError:
        return default


class TaskExecutionError(RuntimeError):
    """A task cannot be executed as asked (raised internally for an inapplicable sort order)."""


@dataclass
class _OpenFile:
    location: str
    stream: OutputStream
    writer: pq.ParquetWriter
    rows: int = 0


@dataclass
class RollingParquetWriter:
    """Writes batches of one partition into Parquet data files of about ``target_size`` bytes each.

    Args:
        table: the table (FileIO, location provider, properties).
        schema: Iceberg schema of the files (the table's current schema).
        spec_id: partition spec of the files.
        partition: partition values of the files.
        target_size: wanted file size in Parquet bytes.
        bytes_per_row: first estimate of compressed bytes per row (e.g. from the input files).
        sort_order_id: recorded on the files when their rows are sorted.
        written: list every new file location is appended to as soon as it is created (so a
            caller can delete partial outputs on failure).
        executor: when given, row groups are encoded on it, at most one at a time per writer,
            while the caller goes on reading (and applying deletes to) the next rows. Every size
            decision is still taken on the finished file's bytes, so the files and row groups are
            the ones inline encoding writes. None: encode inline.
        name_prefix: start of every file name (the task's :func:`~.model.output_prefix`).
    """

    table: Table
    schema: Schema
    spec_id: int
    partition: Record
    target_size: int
    bytes_per_row: float
    sort_order_id: int | None = None
    written: list[str] = field(default_factory=list)
    files: list[DataFile] = field(default_factory=list)
    executor: Executor | None = None
    name_prefix: str = ""

    def __post_init__(self) -> None:
        props = self.table.metadata.properties
        self._arrow_schema = schema_to_pyarrow(self.schema, include_field_ids=True)
        self._writer_kwargs = get_parquet_writer_kwargs(props)
        self._stats_plan = compute_statistics_plan(self.schema, props)
        self._id_mapping = parquet_path_to_id_mapping(self.schema)
        row_group_bytes = min(
            _int_property(props, ROW_GROUP_BYTES_PROPERTY, ROW_GROUP_BYTES_DEFAULT),
            self.target_size // _ROW_GROUPS_PER_FILE,
        )
        self._row_group_bytes = max(_MIN_ROW_GROUP_BYTES, row_group_bytes)
        self._row_group_rows = _int_property(props, ROW_GROUP_ROWS_PROPERTY, ROW_GROUP_ROWS_DEFAULT)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._arrow_bytes_per_row = 1.0
        self._open: _OpenFile | None = None
        self.bytes_per_row = max(self.bytes_per_row, 1e-3)
        self._known_bytes = 0  # bytes of the open file after its last finished row group
        self._inflight: Future[None] | None = None
        self._inflight_rows = 0

    @property
    def output_records(self) -> int:
        """Rows in closed files."""
        return sum(f.record_count for f in self.files)

    @property
    def pending_bytes(self) -> int:
        """Arrow bytes buffered and not yet written."""
        return sum(b.nbytes for b in self._pending)

    def flush(self) -> None:
        """Write everything buffered as row groups now (to bound memory), keeping the file open.

        With an executor the last group may still be encoding on return (see :meth:`settle`).
        """
        while self._pending_rows:
            self._write_group(flushing=True)

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        """Buffer ``data``; write row groups (and roll files) as soon as enough rows are buffered."""
        for batch in data.to_batches() if isinstance(data, pa.Table) else [data]:
            if batch.num_rows:
                self._pending.append(batch)
                self._pending_rows += batch.num_rows
                self._arrow_bytes_per_row = max(batch.nbytes / batch.num_rows, 1e-3)
        # While a group is encoding, the row count is an estimate from the bytes predicted for it;
        # _write_group waits for it and writes only when the exact count is buffered.
        while self._pending_rows and self._pending_rows >= self._next_group_rows():
            if not self._write_group(flushing=False):
                break

    def close(self) -> list[DataFile]:
        """Write what is buffered, close the last file, return every file written."""
        self.flush()
        self.settle()
        self._close_file()
        return self.files

    def settle(self) -> None:
        """Wait for the row group being encoded (raising its error), then roll the file if full."""
        if self._inflight is None:
            return
        inflight, self._inflight = self._inflight, None
        inflight.result()
        self._after_group()

    def abort(self) -> None:
        """Close the open file without describing it (the caller deletes ``written``)."""
        if self._inflight is not None:
            with contextlib.suppress(BaseException):
                self._inflight.result()
            self._inflight = None
        if self._open is not None:
            with contextlib.suppress(Exception):
                self._open.writer.close()
            with contextlib.suppress(Exception):
                self._open.stream.close()
            self._open = None

    def _file_bytes(self) -> int:
        """Bytes of the open file (finished groups; plus the predicted size of one being encoded)."""
        if self._open is None:
            return 0
        return self._known_bytes + math.ceil(self._inflight_rows * self.bytes_per_row)

    def _next_group_rows(self) -> int:
        remaining = max(self.target_size - self._file_bytes(), 1)
        rows_to_fill = math.ceil(remaining / self.bytes_per_row)
        rows_per_group = max(1, int(self._row_group_bytes / self.bytes_per_row))
        # rows buffered in memory (Arrow bytes, several times the Parquet bytes) are capped too
        rows_in_memory = max(1, int(ROW_GROUP_ARROW_BYTES / self._arrow_bytes_per_row))
        return max(1, min(rows_to_fill, rows_per_group, rows_in_memory, self._row_group_rows))

    def _take(self, rows: int) -> pa.Table:
        taken: list[pa.RecordBatch] = []
        need = rows
        while need:
            batch = self._pending[0]
            if batch.num_rows <= need:
                taken.append(batch)
                self._pending.pop(0)
                need -= batch.num_rows
            else:
                taken.append(batch.slice(0, need))
                self._pending[0] = batch.slice(need)
                need = 0
        self._pending_rows -= rows
        return pa.Table.from_batches(taken)

    def _write_group(self, *, flushing: bool) -> bool:
        """Write the next row group (on the executor when there is one); False: not enough rows yet."""
        self.settle()
        rows = self._next_group_rows()
        if self._pending_rows < rows and not flushing:
            return False
        rows = min(rows, self._pending_rows)
        data = self._take(rows)
        if self._open is None:
            self._open_file(data)
        assert self._open is not None
        current = self._open
        if self.executor is None:
            self._encode(current, data, rows)
            self._after_group()
        else:
            self._inflight_rows = rows
            self._inflight = self.executor.submit(self._encode, current, data, rows)
        return True

    @staticmethod
    def _encode(current: _OpenFile, data: pa.Table, rows: int) -> None:
        current.writer.write_table(data, row_group_size=rows)
        current.rows += rows

    def _after_group(self) -> None:
        """Book the finished group: bytes per row of the file so far; close the file when full."""
        assert self._open is not None
        self._inflight_rows = 0
        before = self._known_bytes
        after = self._known_bytes = int(self._open.stream.tell())
        if after > before:
            # compressed bytes per row of this file so far: the best predictor of the next rows
            self.bytes_per_row = max(after / self._open.rows, 1e-3)
        if after >= self.target_size * (1 - _CLOSE_SLACK) or self.target_size - after < self.bytes_per_row:
            self._close_file()

    def _open_file(self, first: pa.Table) -> None:
        location = new_file_location(self.table, self.spec_id, self.partition, prefix=self.name_prefix)
        self.written.append(location)
        stream = self.table.io.new_output(location).create(overwrite=False)
        try:
            writer = pq.ParquetWriter(
                cast(IO[Any], stream),
                schema=self._arrow_schema,
                store_decimal_as_integer=True,
                use_dictionary=dictionary_columns(first),
                **self._writer_kwargs,
            )
        except Exception:
            stream.close()
            raise
        self._open = _OpenFile(location=location, stream=stream, writer=writer)
        self._known_bytes = int(stream.tell())

    def _close_file(self) -> None:
        if self._open is None:
            return
        current, self._open = self._open, None
        current.writer.close()
        size = int(current.stream.tell())
        current.stream.close()
        stats = data_file_statistics_from_parquet_metadata(
            parquet_metadata=current.writer.writer.metadata,
            stats_columns=self._stats_plan,
            parquet_column_mapping=self._id_mapping,
        )
        df = DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=current.location,
            file_format=FileFormat.PARQUET,
            partition=self.partition,
            file_size_in_bytes=size,
            sort_order_id=self.sort_order_id,
            spec_id=self.spec_id,
            equality_ids=None,
            key_metadata=None,
            **stats.to_serialized_dict(),
        )
        df.spec_id = self.spec_id
        self.files.append(df)


def dictionary_columns(rows: pa.Table) -> bool | list[str]:
    """The columns of an output file to dictionary-encode, chosen on a sample of its first rows.

    Top-level columns whose sampled non-null values are at most :data:`DICTIONARY_MAX_DISTINCT`
    distinct (or all null); True (every column, the Parquet default) when the schema has nested
    columns, whose leaf paths are not chosen here.
    """
    if any(pa.types.is_nested(f.type) for f in rows.schema):
        return True
    sample = rows.slice(0, DICTIONARY_SAMPLE_ROWS)
    chosen = []
    for name, column in zip(sample.column_names, sample.columns, strict=True):
        values = len(column) - column.null_count
        try:
            repeated = values == 0 or pc.count_distinct(column).as_py() <= values * DICTIONARY_MAX_DISTINCT
        except pa.ArrowNotImplementedError:  # no distinct count for the type (e.g. uuid): keep it
            repeated = True
        if repeated:
            chosen.append(name)
    return chosen


def _sort_table(table: Table, schema: Schema, data: pa.Table) -> pa.Table:
    """Sort ``data`` by the table's sort order (transforms applied, per-field null order)."""
    order = table.sort_order()
    keys: list[tuple[str, str, str]] = []
    extra: dict[str, pa.ChunkedArray] = {}
    for i, sort_field in enumerate(order.fields):
        name = schema.find_column_name(sort_field.source_id)
        if name is None or name not in data.column_names:
            raise TaskExecutionError(
                f"sort column (field id {sort_field.source_id}) is not a top-level column"
            )
        column = data.column(name)
        if not isinstance(sort_field.transform, IdentityTransform):
            source_type = schema.find_field(sort_field.source_id).field_type
            column = sort_field.transform.pyarrow_transform(source_type)(column)
            name = f"__amoro_sort_{i}"
            extra[name] = column
        direction = "ascending" if sort_field.direction == SortDirection.ASC else "descending"
        nulls = "at_start" if sort_field.null_order == NullOrder.NULLS_FIRST else "at_end"
        keys.append((name, direction, nulls))
    keyed = data
    for name, column in extra.items():
        keyed = keyed.append_column(name, column)
    indices = pc.sort_indices(keyed, options=pc.SortOptions(sort_keys=keys))
    return data.take(indices)


@dataclass
class _PartitionedOutput:
    """One rolling writer per output partition (of the current spec)."""

    table: Table
    schema: Schema
    target_size: int
    bytes_per_row: float
    sort_order_id: int | None
    fixed_partition: Record | None
    written: list[str] = field(default_factory=list)
    writers: dict[Any, RollingParquetWriter] = field(default_factory=dict)
    pending_budget: int = PENDING_BUDGET_BYTES
    executor: Executor | None = None
    name_prefix: str = ""

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        if data.num_rows == 0:
            return
        if self.fixed_partition is not None:
            self._writer(self.fixed_partition).write(data)
            return
        spec = self.table.spec()
        table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
        for part in determine_partitions(spec, self.schema, table):
            self._writer(part.partition_key.partition).write(part.arrow_table_partition)
        self._bound_memory()

    def _bound_memory(self) -> None:
        """With many output partitions, write the biggest buffers early (smaller row groups)."""
        if len(self.writers) < 2:
            return
        pending = {key: w.pending_bytes for key, w in self.writers.items()}
        total = sum(pending.values())
        for key in sorted(pending, key=lambda k: pending[k], reverse=True):
            if total <= self.pending_budget:
                break
            self.writers[key].flush()
            total -= pending[key]

    def _writer(self, partition: Record) -> RollingParquetWriter:
        key = tuple(partition[i] for i in range(len(partition)))
        writer = self.writers.get(key)
        if writer is None:
            writer = RollingParquetWriter(
                table=self.table,
                schema=self.schema,
                spec_id=self.table.spec().spec_id,
                partition=partition,
                target_size=self.target_size,
                bytes_per_row=self.bytes_per_row,
                sort_order_id=self.sort_order_id,
                written=self.written,
                executor=self.executor,
                name_prefix=self.name_prefix,
            )
            self.writers[key] = writer
        return writer

    def close(self) -> list[DataFile]:
        # every writer's last groups are submitted first, so several files encode at once
        for writer in self.writers.values():
            writer.flush()
        files: list[DataFile] = []
        for writer in self.writers.values():
            files.extend(writer.close())
        return files

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


def _rewrite_pos_deletes(
    table: Table, task: RewriteTask, deletes: TaskDeletes, written: list[str]
) -> DataFile | None:
    """One position delete file holding every delete that applies to the rewrite-pos data files."""
    paths: list[pa.Array] = []
    positions: list[pa.Array] = []
    deletes.resolve_equality(task.rewrite_pos_data_files)
    for data in task.rewrite_pos_data_files:
        deleted = deletes.deleted_positions(data)
        deleted = deleted[deleted < data.record_count]
        if len(deleted):
            paths.append(pa.repeat(pa.scalar(data.path, pa.string()), len(deleted)))
            positions.append(pa.array(deleted, pa.int64()))
    if not positions:
        return None
    rows = pa.table({"file_path": pa.concat_arrays(paths), "pos": pa.concat_arrays(positions)})
    location = new_file_location(
        table,
        task.spec_id,
        decode_partition(task.partition),
        suffix="-pos-deletes",
        prefix=_name_prefix(task),
    )
    written.append(location)
    return write_position_delete_file(
        table, rows, spec_id=task.spec_id, partition=decode_partition(task.partition), location=location
    )


def _name_prefix(task: RewriteTask) -> str:
    return output_prefix(task.plan_id, task.task_id) if task.plan_id else ""


def _bytes_per_row_hint(task: RewriteTask) -> float:
    rows = sum(f.record_count for f in task.rewrite_data_files)
    size = sum(f.size_bytes for f in task.rewrite_data_files)
    return size / rows if rows else 100.0


def _counted(batches: Iterable[pa.RecordBatch], counter: list[int]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        counter[0] += batch.num_rows
        yield batch


def _rewrite_data(
    table: Table,
    task: RewriteTask,
    deletes: TaskDeletes,
    schema: Schema,
    target_size: int,
    batch_size: int,
    written: list[str],
    encoder: ThreadPoolExecutor | None,
    live_rows: list[int],
) -> list[DataFile]:
    """Read the task's data files with deletes applied and write them as new data files.

    ``written`` collects every file started (for the caller's cleanup); ``live_rows[0]`` counts the
    rows read. On failure the output in progress is aborted.
    """
    current_spec = table.spec()
    sort_order = table.sort_order()
    sort = task.kind == "full" and not sort_order.is_unsorted
    fixed = decode_partition(task.partition) if task.spec_id == current_spec.spec_id else None
    if fixed is not None and current_spec.is_unpartitioned():
        fixed = Record()
    sink = _PartitionedOutput(
        table=table,
        schema=schema,
        target_size=target_size,
        bytes_per_row=_bytes_per_row_hint(task),
        sort_order_id=sort_order.order_id if sort else None,
        fixed_partition=fixed,
        written=written,
        pending_budget=PENDING_BUDGET_BYTES,
        executor=encoder,
        name_prefix=_name_prefix(task),
    )
    try:
        batches = _counted(
            read_task_batches(
                table, task.rewrite_data_files, deletes=deletes, schema=schema, batch_size=batch_size
            ),
            live_rows,
        )
        if sort:
            rows = pa.Table.from_batches(list(batches), schema=output_arrow_schema(schema))
            try:
                rows = _sort_table(table, schema, rows)
            except (TaskExecutionError, pa.ArrowException, ValueError, NotImplementedError) as exc:
                # Amoro itself never sorts: an order we cannot apply must not block optimizing
                logger.warning(
                    "task %d: writing unsorted, cannot sort by %s: %s", task.task_id, sort_order, exc
                )
                sink.sort_order_id = None
            sink.write(rows)
        else:
            for batch in batches:
                sink.write(batch)
        return sink.close()
    except BaseException:
        sink.abort()
        raise


def execute(
    table: Table,
    task: RewriteTask,
    *,
    config: OptimizingConfig | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
) -> TaskResult:
    """Run one rewrite task and return its new files (not committed) with metrics.

    Args:
        table: the table, loaded at (or after) the snapshot the plan was made on.
        task: the task to run.
        config: the table's optimizing configuration (default: from the table's properties);
            ``target_size`` sets the output file size.
        batch_size: rows per batch read from input files.

    Returns:
        A :class:`TaskResult`: ``outputs`` are new data files (``rewrite_data_files``) and at most one
        position delete file (``rewrite_pos_data_files``), as :func:`datafile_to_dict` dicts.

    Raises:
        airflow_provider_amoro.optimizing.read.InputFileError: an input file is missing, unreadable,
            or differs from the plan. No output file is left behind.
    """
    started = time.monotonic()
    target_size = _target_size(table, config)
    schema = table.schema()
    all_data = [*task.rewrite_data_files, *task.rewrite_pos_data_files]
    written: list[str] = []
    outputs: list[DataFile] = []
    live_rows = [0]
    encoder = (
        ThreadPoolExecutor(max_workers=ENCODE_THREADS, thread_name_prefix="amoro-encode")
        if ENCODE_THREADS > 0
        else None
    )
    try:
        with _task_memory_pool():
            deletes = TaskDeletes.load(table, all_data, task.delete_files, schema=schema)
            if task.rewrite_data_files:
                outputs.extend(
                    _rewrite_data(
                        table, task, deletes, schema, target_size, batch_size, written, encoder, live_rows
                    )
                )
            if task.rewrite_pos_data_files:
                pos_file = _rewrite_pos_deletes(table, task, deletes, written)
                if pos_file is not None:
                    outputs.append(pos_file)
    except BaseException:
        for location in written:
            with contextlib.suppress(Exception):
                table.io.delete(location)
        raise
    finally:
        if encoder is not None:
            encoder.shutdown(wait=True)
    data_outputs = [f for f in outputs if f.content == DataFileContent.DATA]
    return TaskResult(
        task_id=task.task_id,
        outputs=[datafile_to_dict(f) for f in outputs],
        input_files=len(all_data) + len(task.delete_files),
        input_bytes=task.input_bytes,
        input_records=live_rows[0],
        output_records=sum(f.record_count for f in data_outputs),
        output_bytes=sum(f.file_size_in_bytes for f in outputs),
        duration_s=time.monotonic() - started,
    )
