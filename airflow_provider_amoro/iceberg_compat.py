"""The one place that touches pyiceberg's private API.

pyiceberg is pinned exactly (0.12); what the provider needs beyond its public API is named here, so
an upgrade has one module to check. ``tests/test_iceberg_compat.py`` fails when another module of the
package imports a private pyiceberg name or calls a private pyiceberg method.

What is used, and why:

- :func:`commit_updates`: ``Table._do_commit``, the catalog commit of ready-made updates and
  requirements (``catalog.commit_table``, then the table object takes the new metadata, checks the
  table UUID and honours ``write.metadata.delete-after-commit.enabled``). Committing this way skips
  pyiceberg's ``Transaction``, which deep-copies the whole table metadata (every snapshot) on each
  access and each update; the optimizer builds its snapshot once instead.
- :func:`apply_updates`: ``Transaction._apply``, to stage updates built by hand in a transaction.
- :data:`InclusiveMetricsEvaluator`: file pruning by column metrics (``self-optimizing.filter``).
- :func:`to_requested_schema`: projects a Parquet batch onto the table schema by field id
  (schema evolution, type promotion, missing columns).
- :func:`determine_partitions`: splits an Arrow table by partition values.
- :func:`get_parquet_writer_kwargs`: the Parquet writer options of the table properties
  (``write.parquet.*``), so outputs are encoded as pyiceberg writes them.
- :func:`pyarrow_schema_ensure_small_types`: position-delete schemas with 32-bit offsets.
- :func:`check_pyarrow_schema_compatible`, :func:`dataframe_to_data_files`: appends in test helpers.
- :data:`OverwriteFiles`, :data:`FastAppendFiles`, :data:`SnapshotProducer`: pyiceberg's snapshot
  producers, for the few writers that reuse them (data expiration, test helpers).
- :func:`batched_manifest_blocks`: ``ManifestWriter._writer`` (its ``AvroOutputFile``), whose
  ``write_block`` pyiceberg calls once per entry: each entry becomes its own Avro block, with its own
  buffer, deflate call and sync marker. Batching the entries into blocks of
  :data:`MANIFEST_BLOCK_ENTRIES` writes the same entries (what Java writers do) faster and smaller.
  The blocks are written as ``AvroOutputFile.write_block`` writes them (its ``writer`` tree,
  ``encoder``, ``compression_codec`` and ``sync_bytes``), with a ``BinaryEncoder`` whose
  ``write_int`` writes a varint in one call (small values from a table) instead of one call per byte:
  integers are most of what a manifest entry holds (column ids, sizes, counts).
- :func:`read_manifest_entries`: ``ManifestFile.fetch_manifest_entry`` with the Avro reader tree
  cached by the file's writer schema. pyiceberg converts each file's Avro schema to an Iceberg
  schema and resolves a reader tree for every file it opens, which is about 90 % of reading a
  small manifest; a streaming table's manifests all share a handful of schemas. Uses pyiceberg's
  ``AvroFile`` internals (``_read_header``, its decoder and slots) and ``_inherit_from_manifest``.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from pyiceberg.avro.decoder import new_decoder
from pyiceberg.avro.encoder import BinaryEncoder
from pyiceberg.avro.file import META_SCHEMA, AvroFile, AvroFileHeader
from pyiceberg.avro.reader import Reader
from pyiceberg.avro.resolver import construct_reader, resolve_reader
from pyiceberg.expressions.visitors import _InclusiveMetricsEvaluator as InclusiveMetricsEvaluator
from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible as check_pyarrow_schema_compatible
from pyiceberg.io.pyarrow import _dataframe_to_data_files as dataframe_to_data_files
from pyiceberg.io.pyarrow import _determine_partitions as determine_partitions
from pyiceberg.io.pyarrow import _get_parquet_writer_kwargs as get_parquet_writer_kwargs
from pyiceberg.io.pyarrow import _pyarrow_schema_ensure_small_types as pyarrow_schema_ensure_small_types
from pyiceberg.io.pyarrow import _to_requested_schema as to_requested_schema
from pyiceberg.manifest import (
    DEFAULT_READ_VERSION,
    MANIFEST_ENTRY_SCHEMAS,
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    ManifestWriter,
)
from pyiceberg.manifest import _inherit_from_manifest as inherit_from_manifest
from pyiceberg.schema import Schema
from pyiceberg.table.update.snapshot import _FastAppendFiles as FastAppendFiles
from pyiceberg.table.update.snapshot import _OverwriteFiles as OverwriteFiles
from pyiceberg.table.update.snapshot import _SnapshotProducer as SnapshotProducer

if TYPE_CHECKING:
    from pyiceberg.io import FileIO, InputFile
    from pyiceberg.table import Table, Transaction
    from pyiceberg.table.update import TableRequirement, TableUpdate

__all__ = [
    "FastAppendFiles",
    "InclusiveMetricsEvaluator",
    "OverwriteFiles",
    "SnapshotProducer",
    "apply_updates",
    "batched_manifest_blocks",
    "check_pyarrow_schema_compatible",
    "commit_updates",
    "dataframe_to_data_files",
    "determine_partitions",
    "get_parquet_writer_kwargs",
    "pyarrow_schema_ensure_small_types",
    "read_manifest_entries",
    "table_of",
    "to_requested_schema",
]


def commit_updates(
    table: Table, updates: tuple[TableUpdate, ...], requirements: tuple[TableRequirement, ...]
) -> None:
    """Commit ``updates`` under ``requirements`` through the catalog; ``table`` takes the new metadata.

    Raises what the catalog raises: ``CommitFailedException`` when a requirement does not hold (a
    concurrent commit), ``CommitStateUnknownException`` when the outcome is unknown.
    """
    table._do_commit(updates=updates, requirements=requirements)


def apply_updates(
    tx: Transaction, updates: tuple[TableUpdate, ...], requirements: tuple[TableRequirement, ...]
) -> None:
    """Stage ``updates`` and ``requirements`` in the transaction ``tx`` (committed with it)."""
    tx._apply(updates, requirements)


def table_of(tx: Transaction) -> Table:
    """The table a transaction was opened on."""
    return tx._table


MANIFEST_BLOCK_ENTRIES = 1000
"""Manifest entries per Avro block written through :func:`batched_manifest_blocks`."""


def _zigzag_varint(value: int) -> bytes:
    datum = (value << 1) ^ (value >> 63)
    out = bytearray()
    while datum & ~0x7F:
        out.append((datum & 0x7F) | 0x80)
        datum >>= 7
    out.append(datum)
    return bytes(out)


_SMALL_VARINTS = [_zigzag_varint(v) for v in range(1 << 14)]


class _VarintEncoder(BinaryEncoder):
    """pyiceberg's Avro ``BinaryEncoder`` with a varint written in one call (same bytes)."""

    def write_int(self, integer: int) -> None:
        """Write ``integer`` zig-zag varint encoded, as Avro ``int`` and ``long`` are."""
        if 0 <= integer < len(_SMALL_VARINTS):
            self._output_stream.write(_SMALL_VARINTS[integer])
        else:
            self._output_stream.write(_zigzag_varint(integer))


def _write_block(avro: Any, objects: list[Any]) -> None:
    """``AvroOutputFile.write_block`` with the one-call varint encoder for the block's content."""
    content = io.BytesIO()
    encoder = _VarintEncoder(output_stream=content)
    for obj in objects:
        avro.writer.write(encoder, obj)
    block = content.getvalue()
    avro.encoder.write_int(len(objects))
    if codec := avro.compression_codec():
        block, length = codec.compress(block)
    else:
        length = len(block)
    avro.encoder.write_int(length)
    avro.encoder.write(block)
    avro.encoder.write(avro.sync_bytes)


@contextmanager
def batched_manifest_blocks(writer: ManifestWriter, entries: int = MANIFEST_BLOCK_ENTRIES) -> Iterator[None]:
    """Within the block, ``writer`` (an open pyiceberg ``ManifestWriter``) writes its entries in
    Avro blocks of up to ``entries`` entries instead of one block per entry.

    Use it inside the writer's own ``with``, so the last block is written before the file closes::

        with write_manifest(...) as writer, batched_manifest_blocks(writer):
            writer.add_entry(...)

    The file holds the same entries in the same order; readers see no difference. On an error
    the buffered entries are dropped with the file being written.
    """
    avro = writer._writer
    pending: list[Any] = []

    def buffered(objects: list[Any]) -> None:
        pending.extend(objects)
        if len(pending) >= entries:
            _write_block(avro, pending)
            pending.clear()

    avro.write_block = buffered  # type: ignore[method-assign]
    try:
        yield
        if pending:
            _write_block(avro, pending)
    finally:
        del avro.write_block


_SCHEMA_KEY = "avro.schema"
_MAX_CACHED_READERS = 256
_readers: dict[tuple[str, int], tuple[Schema, Reader]] = {}
_readers_lock = threading.Lock()
_header_reader = construct_reader(META_SCHEMA, {-1: AvroFileHeader})


class _CachedReaderAvroFile(AvroFile[Any]):
    """``AvroFile`` whose reader tree is resolved once per distinct writer schema (then shared), read
    from bytes already fetched (``content``) or from its input file."""

    content: bytes | None = None

    def __enter__(self) -> _CachedReaderAvroFile:
        if self.content is None:
            with self.input_file.open() as f:
                self.content = f.read()
        self.decoder = new_decoder(self.content)
        self.content = None
        self.header = _header_reader.read(self.decoder)
        raw = self.header.meta.get(_SCHEMA_KEY)
        if raw is None:
            raise ValueError(f"no schema in the Avro header of {self.input_file.location}")
        key = (raw, id(self.read_schema))
        hit = _readers.get(key)
        if hit is None:
            schema = self.header.get_schema()
            read_schema = self.read_schema or schema
            hit = (schema, resolve_reader(schema, read_schema, self.read_types, self.read_enums))
            with _readers_lock:
                if len(_readers) >= _MAX_CACHED_READERS:
                    _readers.clear()
                _readers[key] = hit
        self.schema, self.reader = hit
        if not self.read_schema:
            self.read_schema = self.schema
        return self


class _Fetched:
    """Stands for the input file of bytes already fetched (only its location is used)."""

    def __init__(self, location: str) -> None:
        self.location = location


def read_manifest_entries(
    io: FileIO, manifest: ManifestFile, discard_deleted: bool = True, content: bytes | None = None
) -> list[ManifestEntry]:
    """The entries of a manifest, sequence numbers inherited, as ``ManifestFile.fetch_manifest_entry``.

    ``content``: the manifest file's bytes when already fetched (else it is read through ``io``).
    """
    avro = _CachedReaderAvroFile(
        io.new_input(manifest.manifest_path)
        if content is None
        else cast("InputFile", _Fetched(manifest.manifest_path)),
        MANIFEST_ENTRY_SCHEMAS[DEFAULT_READ_VERSION],
        read_types={-1: ManifestEntry, 2: DataFile},
        read_enums={0: ManifestEntryStatus, 101: FileFormat, 134: DataFileContent},
    )
    avro.content = content
    with avro as reader:
        return [
            inherit_from_manifest(entry, manifest)
            for entry in reader
            if not discard_deleted or entry.status != ManifestEntryStatus.DELETED
        ]
