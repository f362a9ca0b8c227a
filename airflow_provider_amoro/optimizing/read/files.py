"""Opening a task's input files: errors that name the file, Parquet footers, Iceberg file schemas."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import pyarrow_to_schema

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table


class InputFileError(RuntimeError):
    """An input file of a task is missing, unreadable, or not what the plan described."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read input file {path}: {reason}")
        self.path = path


def open_stream(table: Table, path: str) -> Any:
    """Open ``path`` through the table's FileIO (missing or unreadable: :class:`InputFileError`)."""
    try:
        return table.io.new_input(path).open()
    except (FileNotFoundError, OSError) as exc:
        raise InputFileError(path, f"{type(exc).__name__}: {exc}") from exc


def open_parquet(table: Table, path: str) -> tuple[Any, pq.ParquetFile]:
    """Open a data file and read its footer (the cheapest per-file reader for many small files)."""
    stream = open_stream(table, path)
    try:
        return stream, pq.ParquetFile(stream, pre_buffer=True)
    except (pa.ArrowException, OSError) as exc:
        stream.close()
        raise InputFileError(path, f"not a readable Parquet file ({exc})") from exc


def open_fragment(
    table: Table, path: str, dictionary_columns: tuple[str, ...] = ()
) -> tuple[Any, ds.Fragment]:
    """Open a Parquet file as a dataset fragment; ``dictionary_columns`` are read dictionary-encoded."""
    stream = open_stream(table, path)
    try:
        fmt = ds.ParquetFileFormat(
            read_options=ds.ParquetReadOptions(dictionary_columns=list(dictionary_columns)),
            default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True),
        )
        fragment = fmt.make_fragment(stream)
        _ = fragment.physical_schema  # reads the footer: fails here for a corrupt file
    except (pa.ArrowException, OSError) as exc:
        stream.close()
        raise InputFileError(path, f"not a readable Parquet file ({exc})") from exc
    return stream, fragment


def iceberg_schema_of(table: Table, physical: pa.Schema) -> Schema:
    """The Iceberg schema of a Parquet file (field ids, or the table's name mapping)."""
    return pyarrow_to_schema(
        physical,
        name_mapping=table.metadata.name_mapping(),
        downcast_ns_timestamp_to_us=True,
        format_version=table.metadata.format_version,
    )
