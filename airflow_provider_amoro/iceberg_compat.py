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
  integers are most of what a manifest entry holds (column ids, sizes, counts); and with the
  writer tree's int-keyed maps (pyiceberg's ``avro.writer`` classes) each written in one call. An
  entry whose ``data_file`` was read from a manifest of the writer's own Avro schema (kept by
  :func:`read_manifest_entries`) has those bytes copied instead (:class:`_EntryCopier`): the
  DELETED entries of a compaction and the EXISTING entries of merged manifests.
- :func:`read_manifest_entries`: ``ManifestFile.fetch_manifest_entry`` with the Avro reader tree
  cached by the file's writer schema. pyiceberg converts each file's Avro schema to an Iceberg
  schema and resolves a reader tree for every file it opens, which is about 90 % of reading a
  small manifest; a streaming table's manifests all share a handful of schemas. Its blocks are read
  with the codec resolved once per file, and zstd blocks with one decompressor per thread (pyiceberg
  makes a decompressor and a stream reader per block). Uses pyiceberg's ``AvroFile`` internals (its
  decoder, header and slots, the reader tree) and ``_inherit_from_manifest``.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pyiceberg.avro.codecs.zstandard_codec import ZStandardCodec
from pyiceberg.avro.decoder import new_decoder
from pyiceberg.avro.encoder import BinaryEncoder
from pyiceberg.avro.file import META_SCHEMA, SYNC_SIZE, AvroFile, AvroFileHeader
from pyiceberg.avro.reader import Reader
from pyiceberg.avro.resolver import construct_reader, resolve_reader
from pyiceberg.avro.writer import (
    BinaryWriter,
    IntegerWriter,
    MapWriter,
    OptionWriter,
    StructWriter,
    Writer,
)
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
from pyiceberg.utils.lazydict import LazyDict
from pyiceberg.utils.schema_conversion import AvroSchemaConversion

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


def _varint(value: int) -> bytes:
    """The zig-zag varint of ``value`` (small values from a table)."""
    return _SMALL_VARINTS[value] if 0 <= value < len(_SMALL_VARINTS) else _zigzag_varint(value)


class _VarintEncoder(BinaryEncoder):
    """pyiceberg's Avro ``BinaryEncoder`` with a varint written in one call (same bytes)."""

    def write_int(self, integer: int) -> None:
        """Write ``integer`` zig-zag varint encoded, as Avro ``int`` and ``long`` are."""
        self._output_stream.write(_varint(integer))


@dataclass(frozen=True)
class _IntMapWriter(Writer):
    """pyiceberg's ``MapWriter`` for an int-keyed map of ints (``int``/``long``) or bytes, writing
    the whole map in one call: the same bytes (one block of ``len`` pairs, then the 0 terminator).

    A manifest entry holds six such maps (column sizes, value/null/NaN counts, lower/upper bounds),
    which were most of the time of encoding one with pyiceberg's per-value writer calls."""

    values_are_bytes: bool

    def write(self, encoder: BinaryEncoder, val: Mapping[int, Any]) -> None:
        flat = _flat_pairs(val)
        if not flat:
            encoder.write_int(0)
            return
        small, n = _SMALL_VARINTS, len(_SMALL_VARINTS)
        parts = [_varint(len(flat) // 2)]
        append = parts.append
        if self.values_are_bytes:
            for i in range(0, len(flat), 2):
                k, v = flat[i], flat[i + 1]
                append(small[k] if 0 <= k < n else _zigzag_varint(k))
                append(small[len(v)] if len(v) < n else _zigzag_varint(len(v)))
                append(v)
        else:
            for i in range(0, len(flat), 2):
                k, v = flat[i], flat[i + 1]
                append(small[k] if 0 <= k < n else _zigzag_varint(k))
                append(small[v] if 0 <= v < n else _zigzag_varint(v))
        append(b"\x00")
        encoder.write(b"".join(parts))


def _flat_pairs(val: Mapping[int, Any]) -> list[Any]:
    """``[k0, v0, k1, v1, ...]`` of a map; a pyiceberg ``LazyDict`` read from a manifest (and not
    looked into since) gives its pairs without building its dict."""
    if isinstance(val, LazyDict) and val._dict is None:
        contents = val._contents
        return list(contents[0]) if len(contents) == 1 else [x for block in contents for x in block]
    return [x for pair in val.items() for x in pair]


def _fast_tree(writer: Writer) -> Writer:
    """pyiceberg's writer tree with its int-keyed maps written by :class:`_IntMapWriter`."""
    if isinstance(writer, StructWriter):
        return StructWriter(tuple((pos, _fast_tree(w)) for pos, w in writer.field_writers))
    if isinstance(writer, OptionWriter):
        return OptionWriter(_fast_tree(writer.option))
    if isinstance(writer, MapWriter) and type(writer.key_writer) is IntegerWriter:
        if type(writer.value_writer) is IntegerWriter:
            return _IntMapWriter(values_are_bytes=False)
        if type(writer.value_writer) is BinaryWriter:
            return _IntMapWriter(values_are_bytes=True)
    return writer


_ENTRY_BYTES = "_amoro_entry_bytes"
"""Attribute of a ``DataFile`` read from a manifest: ``(the manifest's Avro schema, the encoded
entry)``. The schema string is interned, so a writer of the same schema finds it by identity."""


@dataclass(frozen=True)
class _EntryCopier:
    """Copies the encoded ``data_file`` of entries read from manifests of the writer's own schema.

    A manifest entry is a prefix (status, snapshot id, sequence numbers: ints and optional longs)
    and then the ``data_file`` struct, its last field. When an entry's ``data_file`` was read from a
    manifest whose Avro schema is the writer's, its bytes stand as they are: the prefix is encoded
    for the new entry (a DELETED or EXISTING status, the new snapshot id) and the ``data_file`` bytes
    are copied after the old entry's prefix. Rewriting thousands of entries (the DELETED entries of
    a compaction, the EXISTING entries of merged manifests) then costs a copy each instead of
    encoding every column statistic again.
    """

    schema_key: str
    prefix: tuple[tuple[int | None, Writer, bool], ...]  # (record position, writer, optional)
    data_file_pos: int

    @staticmethod
    def of(avro: Any, tree: Writer) -> _EntryCopier | None:
        """The copier for the Avro writer ``avro`` (tree ``tree``), or None when its layout is not
        a prefix of ints and optional longs followed by the ``data_file`` struct."""
        if not isinstance(tree, StructWriter) or len(tree.field_writers) < 2:
            return None
        prefix: list[tuple[int | None, Writer, bool]] = []
        for pos, writer in tree.field_writers[:-1]:
            if type(writer) is IntegerWriter:
                prefix.append((pos, writer, False))
            elif isinstance(writer, OptionWriter) and type(writer.option) is IntegerWriter:
                prefix.append((pos, writer, True))
            else:
                return None
        last_pos, last = tree.field_writers[-1]
        if last_pos is None or not isinstance(last, StructWriter):
            return None
        schema = AvroSchemaConversion().iceberg_to_avro(avro.file_schema, schema_name=avro.schema_name)
        return _EntryCopier(sys.intern(json.dumps(schema)), tuple(prefix), last_pos)

    def write(self, encoder: BinaryEncoder, entry: Any, tree: Writer) -> None:
        """Write ``entry``: its ``data_file`` copied when it was read with this schema, else encoded."""
        data_file = entry[self.data_file_pos]
        kept = getattr(data_file, _ENTRY_BYTES, None)
        if kept is None or kept[0] is not self.schema_key:
            tree.write(encoder, entry)
            return
        raw = kept[1]
        at = 0
        for pos, writer, optional in self.prefix:
            writer.write(encoder, entry[pos] if pos is not None else None)
            at = _skip_varint(raw, at)
            if optional and raw[at - 1] != 0:  # a union index other than 0 (null): the long follows
                at = _skip_varint(raw, at)
        encoder.write(raw[at:])


def _skip_varint(raw: bytes, at: int) -> int:
    """The offset after the varint at ``at``."""
    while raw[at] & 0x80:
        at += 1
    return at + 1


def _write_block(avro: Any, objects: list[Any], tree: Writer, copier: _EntryCopier | None = None) -> None:
    """``AvroOutputFile.write_block`` with the one-call varint encoder for the block's content and
    ``tree``, a writer tree equivalent to the Avro file's (:func:`_fast_tree`); with ``copier``,
    entries read from manifests of this schema have their ``data_file`` copied."""
    content = io.BytesIO()
    encoder = _VarintEncoder(output_stream=content)
    if copier is None:
        for obj in objects:
            tree.write(encoder, obj)
    else:
        for obj in objects:
            copier.write(encoder, obj, tree)
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
    tree = _fast_tree(avro.writer)
    copier = _EntryCopier.of(avro, tree)

    def buffered(objects: list[Any]) -> None:
        pending.extend(objects)
        if len(pending) >= entries:
            _write_block(avro, pending, tree, copier)
            pending.clear()

    avro.write_block = buffered  # type: ignore[method-assign]
    try:
        yield
        if pending:
            _write_block(avro, pending, tree, copier)
    finally:
        del avro.write_block


_SCHEMA_KEY = "avro.schema"
_MAX_CACHED_READERS = 256
_readers: dict[tuple[str, int], tuple[Schema, Reader]] = {}
_readers_lock = threading.Lock()
_header_reader = construct_reader(META_SCHEMA, {-1: AvroFileHeader})


_zstd_local = threading.local()


def _zstd_decompress(data: bytes) -> bytes:
    """One zstd frame decompressed with this thread's decompressor (pyiceberg's codec makes a new
    decompressor and a stream reader for every block: a tenth of reading a one-entry manifest).
    A frame without its content size in the header (streaming writers) decompresses too."""
    dctx = getattr(_zstd_local, "dctx", None)
    if dctx is None:
        from zstandard import ZstdDecompressor

        dctx = _zstd_local.dctx = ZstdDecompressor()
    return cast(bytes, dctx.decompressobj().decompress(data))


class _CachedReaderAvroFile(AvroFile[Any]):
    """``AvroFile`` whose reader tree is resolved once per distinct writer schema (then shared),
    decoded from the file's bytes, fetched by the caller; :meth:`entries` reads its blocks with
    the codec resolved once per file."""

    def __init__(self, location: str, content: bytes, read_schema: Schema, **kwargs: Any) -> None:
        super().__init__(cast("InputFile", _Fetched(location)), read_schema, **kwargs)
        self._content = content

    def entries(self) -> Iterator[Any]:
        """Every manifest entry of every block, in order (as iterating ``AvroFile`` yields them).

        Each entry's encoded bytes are kept on its ``data_file`` with the file's schema
        (:data:`_ENTRY_BYTES`), for writers of the same schema to copy instead of encoding the file
        anew (:func:`batched_manifest_blocks`).
        """
        codec = self.header.compression_codec()
        decompress = _zstd_decompress if codec is ZStandardCodec else codec.decompress if codec else None
        decoder, reader, sync, end = self.decoder, self.reader, self.header.sync, len(self._content)
        schema_key = self._schema_key
        while decoder.tell() < end:
            count = decoder.read_int()
            data = decoder.read_bytes()
            plain = decompress(data) if decompress is not None else data
            block = new_decoder(plain)
            for _ in range(count):
                start = block.tell()
                entry = reader.read(block)
                setattr(entry.data_file, _ENTRY_BYTES, (schema_key, plain[start : block.tell()]))
                yield entry
            if decoder.read(SYNC_SIZE) != sync:
                raise ValueError(f"Avro file {self.input_file.location}: sync marker mismatch after a block")

    def __enter__(self) -> _CachedReaderAvroFile:
        self.decoder = new_decoder(self._content)
        self.header = _header_reader.read(self.decoder)
        raw = self.header.meta.get(_SCHEMA_KEY)
        if raw is None:
            raise ValueError(f"no schema in the Avro header of {self.input_file.location}")
        self._schema_key = sys.intern(raw)
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
    """Stands for the input file whose bytes the caller fetched (only its location is used)."""

    def __init__(self, location: str) -> None:
        self.location = location


def read_manifest_entries(
    io: FileIO, manifest: ManifestFile, discard_deleted: bool = True, content: bytes | None = None
) -> list[ManifestEntry]:
    """The entries of a manifest, sequence numbers inherited, as ``ManifestFile.fetch_manifest_entry``.

    ``content``: the manifest file's bytes when already fetched (else it is read through ``io``).
    """
    if content is None:
        with io.new_input(manifest.manifest_path).open() as f:
            content = f.read()
    with _CachedReaderAvroFile(
        manifest.manifest_path,
        content,
        MANIFEST_ENTRY_SCHEMAS[DEFAULT_READ_VERSION],
        read_types={-1: ManifestEntry, 2: DataFile},
        read_enums={0: ManifestEntryStatus, 101: FileFormat, 134: DataFileContent},
    ) as reader:
        return [
            inherit_from_manifest(entry, manifest)
            for entry in reader.entries()
            if not discard_deleted or entry.status != ManifestEntryStatus.DELETED
        ]
