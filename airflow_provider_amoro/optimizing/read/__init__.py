"""Streaming reads of a task's data files with position and equality deletes applied.

How it works, per task (one module per concept):

1. Delete loading (:mod:`.deletes`): :meth:`TaskDeletes.load` reads every delete file of the task
   once, in parallel threads; :meth:`TaskDeletes.deleted_positions` answers which rows of a data
   file are deleted (``model.delete_applies``: sequence numbers, spec and partition).
2. The equality join (:mod:`.equality`): equality deletes become row positions by reading only the
   key columns of many data files and joining them with the delete keys in one Arrow hash join.
3. Projection (:mod:`.projection`): every batch is projected to the requested schema (default: the
   table's current schema) by field id; all batches share one Arrow schema.
4. Read-ahead, two schemes: the fast path (:mod:`.fast_scan`, delete-free files whose schema is the
   read schema: files of a few KB decoded on the threads that read and check their footers, the
   others by bounded threaded dataset scans over fragments whose footers were read and checked
   once) and the per-file path (:mod:`.per_file`: small files read whole ahead on a few threads,
   large ones streamed), both dropping deleted positions with a vectorised mask.

Rewrite-pos reuses step 2: the positions it returns, as one position delete file, replace the
task's delete files without reading the data columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from airflow_provider_amoro.optimizing.model import FileRef
from airflow_provider_amoro.optimizing.read.deletes import TaskDeletes, apply_positions
from airflow_provider_amoro.optimizing.read.fast_scan import ScanRun, segments
from airflow_provider_amoro.optimizing.read.files import InputFileError
from airflow_provider_amoro.optimizing.read.per_file import read_data_file_batches, read_files
from airflow_provider_amoro.optimizing.read.projection import (
    DEFAULT_BATCH_ROWS,
    Positions,
    Projection,
    output_arrow_schema,
)

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "InputFileError",
    "Positions",
    "TaskDeletes",
    "apply_positions",
    "output_arrow_schema",
    "read_data_file_batches",
    "read_task_batches",
]


def read_task_batches(
    table: Table,
    data_files: Sequence[FileRef],
    delete_files: Sequence[FileRef] = (),
    *,
    schema: Schema | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    deletes: TaskDeletes | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the live rows of ``data_files`` with ``delete_files`` applied, in one Arrow schema.

    Position deletes apply when their sequence number is >= the data file's, equality deletes
    when it is >, both within the same spec and partition or from an unpartitioned spec
    (``model.delete_applies``); equality deletes treat NULL as equal to NULL. Files without
    deletes whose schema needs no projection take the fast path (one multi-file dataset scan, see
    the module docstring); the others are read file by file.

    Args:
        table: the table.
        data_files: data files to read, in order.
        delete_files: delete files that may apply to them (others are ignored).
        schema: the read schema, default the table's current schema; batches carry its column
            names and :func:`output_arrow_schema` types.
        batch_size: rows per batch read from each file (batches shrink by the deleted rows).
        deletes: an already loaded :class:`TaskDeletes` (then ``delete_files`` is ignored).

    Yields:
        Non-empty record batches.

    Raises:
        InputFileError: a data or delete file is missing or unreadable.
    """
    schema = schema or table.schema()
    index = (
        deletes if deletes is not None else TaskDeletes.load(table, data_files, delete_files, schema=schema)
    )
    index.resolve_equality(data_files)
    projections: dict[str, Projection] = {}
    for segment in segments(table, data_files, index, schema, projections):
        if isinstance(segment, ScanRun):
            yield from segment.batches(batch_size)
        else:
            yield from read_files(table, segment, index, schema, batch_size, projections)
