"""Writers of Iceberg v2 delete files (position and equality deletes) and of Parquet files with statistics.

pyiceberg 0.12 cannot write delete files. The functions here write them as Flink and Spark do and
return pyiceberg ``DataFile`` objects with complete statistics, ready to be put in a manifest:

- :func:`write_position_delete_file`: ``file_path`` (field id 2147483546) and ``pos`` (2147483545),
  sorted by path then position, with full (untruncated) bounds so readers can tell which data
  files a delete file names.
- :func:`write_equality_delete_file`: the equality columns of the table's current schema.

:func:`write_parquet` is the shared low-level step: write an Arrow table with Iceberg field ids to a
Parquet file and compute its ``DataFileStatistics`` with pyiceberg's own statistics code.
No commit happens here; see ``airflow_provider_amoro.testing.deletes`` for committing helpers and
the ``commit`` module for the optimizer's REPLACE snapshot.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import (
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
    schema_to_pyarrow,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat, ManifestContent, ManifestWriterV2
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.typedef import Record
from pyiceberg.types import LongType, NestedField, StringType

from airflow_provider_amoro.iceberg_compat import get_parquet_writer_kwargs, pyarrow_schema_ensure_small_types

if TYPE_CHECKING:
    from pyiceberg.io import FileIO
    from pyiceberg.io.fileformat import DataFileStatistics
    from pyiceberg.partitioning import PartitionKey
    from pyiceberg.table import Table

POS_FILE_PATH_FIELD_ID = 2147483546
"""Reserved field id of ``file_path`` in position delete files (Iceberg spec)."""
POS_POS_FIELD_ID = 2147483545
"""Reserved field id of ``pos`` in position delete files (Iceberg spec)."""

POSITION_DELETE_SCHEMA = Schema(
    NestedField(POS_FILE_PATH_FIELD_ID, "file_path", StringType(), required=True),
    NestedField(POS_POS_FIELD_ID, "pos", LongType(), required=True),
)
"""The Iceberg schema of a position delete file (without the optional ``row`` column)."""

_FULL_METRICS = {"write.metadata.metrics.default": "full"}


class DeleteManifestWriterV2(ManifestWriterV2):
    """A v2 manifest writer for delete files (pyiceberg 0.12's writer always writes ``content=data``).

    Use like ``ManifestWriterV2``: ``DeleteManifestWriterV2(spec, schema, output_file, snapshot_id,
    avro_compression)``; entries added with ``sequence_number=None`` inherit the snapshot's.
    """

    def content(self) -> ManifestContent:
        """Manifest content: DELETES."""
        return ManifestContent.DELETES

    @property
    def _meta(self) -> dict[str, str]:
        return {**super()._meta, "content": "deletes"}


class _PartitionPath:
    """Duck-typed stand-in for ``PartitionKey``: location providers only call ``to_path()``."""

    def __init__(self, spec: PartitionSpec, partition: Record, schema: Schema) -> None:
        self._path = spec.partition_to_path(partition, schema)

    def to_path(self) -> str:
        return self._path


def new_file_location(
    table: Table,
    spec_id: int,
    partition: Record,
    *,
    suffix: str = "",
    extension: str = "parquet",
    prefix: str = "",
) -> str:
    """A fresh file location in ``partition`` of spec ``spec_id``, from the table's location provider.

    Args:
        table: the table.
        spec_id: partition spec the file belongs to (may be an old spec).
        partition: the partition values in that spec's field order.
        suffix: text appended to the random file name (e.g. ``-deletes``).
        extension: file extension without the dot.
        prefix: start of the file name (an optimizing process's :func:`~.model.output_prefix`);
            empty: Iceberg's usual ``00000-0-``.

    Returns:
        The full location, e.g. ``file:///…/data/day=2024-01-01/<uuid>-deletes.parquet``.
    """
    spec = table.metadata.specs()[spec_id]
    name = f"{prefix or '00000-0-'}{uuid.uuid4()}{suffix}.{extension}"
    key: PartitionKey | None = None
    if spec.fields and len(partition) > 0:
        key = cast("PartitionKey", _PartitionPath(spec, partition, table.schema()))
    return table.location_provider().new_data_location(data_file_name=name, partition_key=key)


def write_parquet(
    io: FileIO,
    location: str,
    data: pa.Table,
    file_schema: Schema,
    properties: Mapping[str, str],
    *,
    metrics_properties: Mapping[str, str] | None = None,
) -> tuple[int, DataFileStatistics]:
    """Write ``data`` (already in ``file_schema``'s Arrow form, with field ids) to one Parquet file.

    Args:
        io: the table's FileIO.
        location: where to write; must not exist.
        data: rows whose Arrow schema carries ``PARQUET:field_id`` metadata.
        file_schema: the Iceberg schema of the file (used for statistics).
        properties: table properties (compression, page sizes, metrics modes).
        metrics_properties: overrides of the metrics properties (e.g. full metrics for deletes).

    Returns:
        ``(file_size_in_bytes, statistics)``.
    """
    props = dict(properties)
    output = io.new_output(location)
    with output.create(overwrite=False) as fos:
        writer = pq.ParquetWriter(
            cast(IO[Any], fos),
            schema=data.schema,
            store_decimal_as_integer=True,
            **get_parquet_writer_kwargs(props),
        )
        with writer:
            writer.write_table(data)
    stats = data_file_statistics_from_parquet_metadata(
        parquet_metadata=writer.writer.metadata,
        stats_columns=compute_statistics_plan(file_schema, {**props, **(metrics_properties or {})}),
        parquet_column_mapping=parquet_path_to_id_mapping(file_schema),
    )
    return len(output), stats


def _delete_arrow_schema(schema: Schema) -> pa.Schema:
    # Small Arrow types: iceberg-rust (and Java) expect ``string``, not ``large_string``, in delete files.
    return pyarrow_schema_ensure_small_types(schema_to_pyarrow(schema))


def _position_rows(deletes: pa.Table | Iterable[tuple[str, int]]) -> pa.Table:
    arrow_schema = _delete_arrow_schema(POSITION_DELETE_SCHEMA)
    if isinstance(deletes, pa.Table):
        table = deletes.select(["file_path", "pos"]).cast(arrow_schema)
    else:
        pairs = list(deletes)
        table = pa.table(
            {
                "file_path": pa.array([p for p, _ in pairs], type=arrow_schema.field("file_path").type),
                "pos": pa.array([int(n) for _, n in pairs], type=pa.int64()),
            },
            schema=arrow_schema,
        )
    if table.column("file_path").null_count or table.column("pos").null_count:
        raise ValueError("position deletes must not contain nulls")
    return table.sort_by([("file_path", "ascending"), ("pos", "ascending")])


def write_position_delete_file(
    table: Table,
    deletes: pa.Table | Iterable[tuple[str, int]],
    *,
    spec_id: int,
    partition: Record,
    location: str | None = None,
) -> DataFile:
    """Write one position delete file (no commit) and describe it as a pyiceberg ``DataFile``.

    Args:
        table: the table the deletes belong to.
        deletes: ``(file_path, pos)`` pairs, or an Arrow table with ``file_path`` and ``pos`` columns.
            Rows are sorted by path and position before writing, as the spec requires.
        spec_id: spec of the data files named by the deletes.
        partition: partition of those data files (spec field order).
        location: where to write; default: a new file in the partition's data folder.

    Returns:
        A ``DataFile`` with ``content=POSITION_DELETES``, record count, size, and full bounds of
        ``file_path`` and ``pos``.

    Raises:
        ValueError: when there are no deletes or a path/position is null.
    """
    rows = _position_rows(deletes)
    if rows.num_rows == 0:
        raise ValueError("no position deletes to write")
    location = location or new_file_location(table, spec_id, partition, suffix="-pos-deletes")
    size, stats = write_parquet(
        table.io,
        location,
        rows,
        POSITION_DELETE_SCHEMA,
        table.metadata.properties,
        metrics_properties=_FULL_METRICS,
    )
    return _delete_data_file(
        DataFileContent.POSITION_DELETES, location, size, stats, spec_id, partition, None
    )


def equality_delete_schema(schema: Schema, equality_ids: Sequence[int]) -> Schema:
    """The Iceberg schema of an equality delete file: the equality columns, in table schema order."""
    wanted = set(equality_ids)
    fields = [f for f in schema.fields if f.field_id in wanted]
    missing = wanted - {f.field_id for f in fields}
    if missing:
        raise ValueError(f"equality field ids {sorted(missing)} are not top-level columns of the schema")
    return Schema(*fields, schema_id=schema.schema_id)


def resolve_equality_ids(schema: Schema, columns: Sequence[str | int]) -> list[int]:
    """Field ids for ``columns`` (names or ids) of ``schema``; only top-level primitive columns."""
    ids: list[int] = []
    for col in columns:
        field = schema.find_field(col)
        if not field.field_type.is_primitive:
            raise ValueError(f"equality column {field.name!r} is not a primitive type")
        ids.append(field.field_id)
    if not ids:
        raise ValueError("at least one equality column is required")
    return ids


def write_equality_delete_file(
    table: Table,
    rows: pa.Table,
    equality_ids: Sequence[int],
    *,
    spec_id: int,
    partition: Record,
    location: str | None = None,
) -> DataFile:
    """Write one equality delete file (no commit) and describe it as a pyiceberg ``DataFile``.

    Args:
        table: the table the deletes belong to; its current schema names the columns.
        rows: the delete keys; must contain the equality columns by their current names (other
            columns are ignored). A NULL key value deletes rows whose value is NULL.
        equality_ids: field ids of the equality columns.
        spec_id: spec of the partition the deletes are scoped to.
        partition: the partition values (spec field order); empty for an unpartitioned spec.
        location: where to write; default: a new file in the partition's data folder.

    Returns:
        A ``DataFile`` with ``content=EQUALITY_DELETES`` and ``equality_ids`` set.

    Raises:
        ValueError: when ``rows`` is empty or lacks an equality column.
    """
    if rows.num_rows == 0:
        raise ValueError("no equality deletes to write")
    file_schema = equality_delete_schema(table.schema(), equality_ids)
    arrow_schema = _delete_arrow_schema(file_schema)
    names = [f.name for f in file_schema.fields]
    absent = [n for n in names if n not in rows.column_names]
    if absent:
        raise ValueError(f"equality delete rows lack columns {absent}")
    data = pa.Table.from_arrays(
        [rows.column(n).cast(arrow_schema.field(n).type) for n in names], schema=arrow_schema
    )
    location = location or new_file_location(table, spec_id, partition, suffix="-eq-deletes")
    size, stats = write_parquet(table.io, location, data, file_schema, table.metadata.properties)
    return _delete_data_file(
        DataFileContent.EQUALITY_DELETES, location, size, stats, spec_id, partition, list(equality_ids)
    )


def _delete_data_file(
    content: DataFileContent,
    location: str,
    size: int,
    stats: DataFileStatistics,
    spec_id: int,
    partition: Record,
    equality_ids: list[int] | None,
) -> DataFile:
    df = DataFile.from_args(
        content=content,
        file_path=location,
        file_format=FileFormat.PARQUET,
        partition=partition,
        file_size_in_bytes=size,
        sort_order_id=None,
        spec_id=spec_id,
        equality_ids=equality_ids,
        key_metadata=None,
        **stats.to_serialized_dict(),
    )
    df.spec_id = spec_id
    return df
