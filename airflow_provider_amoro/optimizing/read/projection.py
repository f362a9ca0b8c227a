"""Projection of a data file's batches to the read schema by field id, and the per-file reader.

Added columns become NULL (or the identity-partition value for files that lack the column),
renamed columns are found by id, promoted types are cast. Files whose physical schema already is
the read schema (same names, order and types up to string offset width) are relabelled without
pyiceberg's per-batch schema visitor (:attr:`Projection.direct`). All batches share one Arrow schema.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.schema import Schema, prune_columns
from pyiceberg.transforms import IdentityTransform

from airflow_provider_amoro.iceberg_compat import to_requested_schema
from airflow_provider_amoro.optimizing.model import FileRef, decode_partition
from airflow_provider_amoro.optimizing.read.files import InputFileError, iceberg_schema_of, open_parquet

if TYPE_CHECKING:
    from pyiceberg.table import Table

DEFAULT_BATCH_ROWS = 131072
"""Rows per record batch read from a data file."""

POS_COLUMN = "__amoro_pos"
"""The column :func:`read_columns_with_positions` adds: each row's position in its file."""

Positions = npt.NDArray[np.int64]
"""Sorted unique row positions in one data file."""
EMPTY_POSITIONS: Positions = np.empty(0, dtype=np.int64)


def output_arrow_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema of the batches the task reader yields for ``schema`` (no field ids)."""
    return schema_to_pyarrow(schema, include_field_ids=False)


_SAME_STORAGE = {
    (pa.string(), pa.large_string()),
    (pa.large_string(), pa.string()),
    (pa.binary(), pa.large_binary()),
    (pa.large_binary(), pa.binary()),
}


@dataclass
class Projection:
    """How batches of files with one physical schema become batches of the requested schema.

    ``direct`` means the file holds exactly the requested top-level primitive columns, by the same
    names and in the same order, with the same types up to string/binary offset width: batches
    are then relabelled (and offsets widened) without pyiceberg's per-batch schema visitor.
    """

    requested: Schema
    file_project: Schema
    file_ids: set[int]
    columns: list[str]
    target: pa.Schema
    direct: bool

    @classmethod
    def build(cls, requested: Schema, file_schema: Schema, physical: pa.Schema) -> Projection:
        # Full types: a list or map column cannot be projected element by element (pyiceberg
        # raises), and ``requested`` names every nested id anyway; extra struct children read here
        # are dropped by the projection to ``requested``.
        file_project = prune_columns(file_schema, requested.field_ids, select_full_types=True)
        columns = [c.name for c in file_project.columns]
        target = output_arrow_schema(requested)
        direct = (
            columns == target.names
            and [f.field_id for f in file_project.fields] == [f.field_id for f in requested.fields]
            and all(f.field_type.is_primitive for f in requested.fields)
            and all(
                physical.field(name).type == field.type
                or (physical.field(name).type, field.type) in _SAME_STORAGE
                for name, field in zip(columns, target, strict=True)
            )
        )
        return cls(requested, file_project, file_schema.field_ids, columns, target, direct)

    def apply(self, batch: pa.RecordBatch, missing: dict[int, Any]) -> pa.RecordBatch:
        """``batch`` (columns as scanned) in the requested schema."""
        if self.direct and not missing:
            arrays = [
                col if col.type == field.type else col.cast(field.type)
                for col, field in zip(batch.columns, self.target, strict=True)
            ]
            return pa.RecordBatch.from_arrays(arrays, schema=self.target)
        projected = to_requested_schema(
            self.requested,
            self.file_project,
            batch,
            downcast_ns_timestamp_to_us=True,
            projected_missing_fields=missing,
            allow_timestamp_tz_mismatch=True,
        )
        return projected if projected.schema == self.target else projected.cast(self.target)


def _iter_batches(
    parquet: pq.ParquetFile, columns: list[str], batch_size: int, use_threads: bool
) -> Iterator[pa.RecordBatch]:
    if columns:
        yield from parquet.iter_batches(batch_size=batch_size, columns=columns, use_threads=use_threads)
        return
    # none of the requested columns is in the file (all added later): rows without columns
    remaining = parquet.metadata.num_rows
    while remaining > 0:
        n = min(batch_size, remaining)
        yield pa.RecordBatch.from_struct_array(pa.nulls(n, pa.struct([])).fill_null({}))
        remaining -= n


def _schema_key(physical: pa.Schema) -> str:
    return str(physical.to_string(show_field_metadata=True, show_schema_metadata=False))


def projection_for(
    table: Table, path: str, physical: pa.Schema, requested: Schema, cache: dict[str, Projection]
) -> Projection:
    """The projection of a physical schema to ``requested``, cached by schema (with field ids)."""
    key = _schema_key(physical)
    projection = cache.get(key)
    if projection is None:
        try:
            file_schema = iceberg_schema_of(table, physical)
        except ValueError as exc:
            raise InputFileError(path, f"no Iceberg field ids ({exc})") from exc
        projection = Projection.build(requested, file_schema, physical)
        cache[key] = projection
    return projection


@dataclass
class FileReader:
    """Reads one data file as record batches projected to the read schema (no deletes applied)."""

    table: Table
    data: FileRef
    schema: Schema
    columns: Sequence[str] | None = None
    projections: dict[str, Projection] | None = None

    def batches(self, batch_size: int, use_threads: bool = True) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Yield ``(first row position, batch)``; raises InputFileError on missing or short files.

        ``use_threads``: decode columns in parallel (for a file streamed alone); False when many
        files are read at once on their own threads.
        """
        requested = (
            self.schema
            if self.columns is None
            else prune_columns(
                self.schema,
                {self.schema.find_field(c).field_id for c in self.columns},
                select_full_types=False,
            )
        )
        stream, parquet = open_parquet(self.table, self.data.path)
        with stream:
            projection = self._projection(parquet.schema_arrow, requested)
            missing = self._identity_partition_values(requested, projection.file_ids)
            start = 0
            try:
                for batch in _iter_batches(parquet, projection.columns, batch_size, use_threads):
                    if batch.num_rows == 0:
                        continue
                    yield start, projection.apply(batch, missing)
                    start += batch.num_rows
            except pa.ArrowException as exc:
                raise InputFileError(self.data.path, f"corrupt Parquet data ({exc})") from exc
        if start != self.data.record_count:
            raise InputFileError(
                self.data.path, f"has {start} rows, the plan expected {self.data.record_count}"
            )

    def _projection(self, physical: pa.Schema, requested: Schema) -> Projection:
        """The projection of this file's physical schema, shared by files with the same schema."""
        cache = self.projections if self.projections is not None else {}
        return projection_for(self.table, self.data.path, physical, requested, cache)

    def _identity_partition_values(self, requested: Schema, file_ids: set[int]) -> dict[int, Any]:
        """Identity-partition values for requested columns the file lacks (files added by add_files)."""
        absent = requested.field_ids - file_ids
        spec = self.table.metadata.specs().get(self.data.spec_id)
        if not absent or spec is None or not spec.fields:
            return {}
        partition = decode_partition(self.data.partition)
        result: dict[int, Any] = {}
        for pos, pfield in enumerate(spec.fields):
            if pfield.source_id in absent and isinstance(pfield.transform, IdentityTransform):
                value = partition[pos]
                if value is not None:
                    result[pfield.source_id] = value
        return result


def read_columns_with_positions(
    table: Table,
    data: FileRef,
    schema: Schema,
    columns: Sequence[str],
    *,
    use_threads: bool = True,
    projections: dict[str, Projection] | None = None,
) -> pa.Table:
    reader = FileReader(table, data, schema, columns, projections=projections)
    parts = []
    for start, batch in reader.batches(DEFAULT_BATCH_ROWS * 4, use_threads):
        pos = pa.array(np.arange(start, start + batch.num_rows, dtype=np.int64))
        parts.append(pa.Table.from_batches([batch]).append_column(POS_COLUMN, pos))
    if not parts:
        return pa.table(
            {c: pa.array([], pa.null()) for c in columns} | {POS_COLUMN: pa.array([], pa.int64())}
        )
    return pa.concat_tables(parts)
