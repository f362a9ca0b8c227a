"""Manifests the optimizer writes hold many entries per Avro block (pyiceberg writes one per entry)."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.manifest import ManifestEntryStatus, write_manifest

from airflow_provider_amoro.iceberg_compat import batched_manifest_blocks, read_manifest_entries


def _write(table: Any, entries: list[Any], path: str, block: int | None, codec: Any = "deflate") -> Any:
    spec, schema = table.spec(), table.schema()
    output = table.io.new_output(path)
    with write_manifest(2, spec, schema, output, 999, codec) as writer:
        if block is None:
            for e in entries:
                writer.delete(e)
        else:
            with batched_manifest_blocks(writer, entries=block):
                for e in entries:
                    writer.delete(e)
    return writer.to_manifest_file()


@pytest.mark.parametrize("codec", ["deflate", "zstandard", "null"])
def test_batched_blocks_write_the_same_entries_smaller(
    sqlite_catalog: Any, tmp_path: Any, codec: str
) -> None:
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table(
        "db.blocks", schema=pa.schema([("id", pa.int64()), ("s", pa.string())])
    )
    for i in range(7):
        table.append(pa.table({"id": [i, i + 100], "s": [f"a{i}", None]}))
    entries = [
        e for m in table.current_snapshot().manifests(table.io) for e in read_manifest_entries(table.io, m)
    ]
    assert len(entries) == 7

    plain = _write(table, entries, str(tmp_path / "plain.avro"), None, codec)
    batched = _write(table, entries, str(tmp_path / "batched.avro"), 3, codec)  # blocks of 3, 3 and 1

    assert batched.deleted_files_count == plain.deleted_files_count == 7
    assert batched.manifest_length < plain.manifest_length
    for manifest in (plain, batched):
        back = read_manifest_entries(table.io, manifest, discard_deleted=False)
        assert [e.status for e in back] == [ManifestEntryStatus.DELETED] * 7
        assert [e.data_file.file_path for e in back] == [e.data_file.file_path for e in entries]
        assert [e.sequence_number for e in back] == [e.sequence_number for e in entries]
        assert [e.data_file.lower_bounds for e in back] == [e.data_file.lower_bounds for e in entries]
        assert [e.data_file.null_value_counts for e in back] == [
            e.data_file.null_value_counts for e in entries
        ]


def test_a_failed_write_drops_the_buffered_entries(sqlite_catalog: Any, tmp_path: Any) -> None:
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.blocks_fail", schema=pa.schema([("id", pa.int64())]))
    table.append(pa.table({"id": [1]}))
    entry = read_manifest_entries(table.io, table.current_snapshot().manifests(table.io)[0])[0]
    output = table.io.new_output(str(tmp_path / "failed.avro"))
    writer = write_manifest(2, table.spec(), table.schema(), output, 999, "deflate")
    with pytest.raises(RuntimeError, match="boom"), writer, batched_manifest_blocks(writer):
        writer.delete(entry)
        raise RuntimeError("boom")
    assert "write_block" not in vars(writer._writer)  # the Avro writer is itself again


@pytest.mark.parametrize(
    "value", [0, 1, 63, 64, 127, 128, 8191, 16383, 16384, 2**31 - 1, 2**62, -1, -64, -65, -(2**63)]
)
def test_the_varint_encoder_writes_pyiceberg_s_bytes(value: int) -> None:
    from pyiceberg.avro.encoder import BinaryEncoder

    from airflow_provider_amoro.iceberg_compat import _VarintEncoder

    ours, theirs = io.BytesIO(), io.BytesIO()
    _VarintEncoder(ours).write_int(value)
    BinaryEncoder(theirs).write_int(value)
    assert ours.getvalue() == theirs.getvalue()


def test_the_fast_map_writers_write_pyiceberg_s_bytes(sqlite_catalog: Any, tmp_path: Any) -> None:
    """Entries with every statistics map (counts, NaN counts, bounds), NULLs, empty maps and
    large values encode to the same bytes with the one-call map writers as with pyiceberg's tree."""
    from pyiceberg.avro.encoder import BinaryEncoder

    from airflow_provider_amoro.iceberg_compat import _fast_tree

    sqlite_catalog.create_namespace("db")
    schema = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("s", pa.string()), ("b", pa.binary())])
    table = sqlite_catalog.create_table("db.maps", schema=schema)
    table.append(
        pa.table(
            {"id": [1, 2**40], "x": [float("nan"), -1.5], "s": ["é" * 300, None], "b": [b"\x00" * 20, b""]},
            schema=schema,
        )
    )
    table.append(pa.table({"id": [None], "x": [None], "s": [None], "b": [None]}, schema=schema))
    entries = [
        e for m in table.current_snapshot().manifests(table.io) for e in read_manifest_entries(table.io, m)
    ]
    maps = [
        m
        for e in entries
        for m in (e.data_file.value_counts, e.data_file.nan_value_counts, e.data_file.lower_bounds)
    ]
    assert any(m == {} for m in maps) and any(m for m in maps)  # empty and filled maps
    output = table.io.new_output(str(tmp_path / "m.avro"))
    with write_manifest(2, table.spec(), table.schema(), output, 999, "deflate") as writer:
        tree = writer._writer.writer
        fast = _fast_tree(tree)
        assert fast != tree and "_IntMapWriter" in repr(fast)
        theirs, ours = io.BytesIO(), io.BytesIO()
        for e in entries:
            wrapped = writer.prepare_entry(e)
            tree.write(BinaryEncoder(theirs), wrapped)
            fast.write(BinaryEncoder(ours), wrapped)
        writer.add_entry(entries[0])  # a manifest cannot be closed empty
    assert len(entries) == 2 and ours.getvalue() == theirs.getvalue()


def test_a_zstd_frame_without_its_size_decompresses() -> None:
    # streaming zstd writers (Java's ZstdOutputStream) leave the content size out of the frame header
    from zstandard import ZstdCompressor

    from airflow_provider_amoro.iceberg_compat import _zstd_decompress

    data = bytes(range(256)) * 300
    streamed = ZstdCompressor(write_content_size=False).compress(data)
    assert _zstd_decompress(streamed) == data
    assert _zstd_decompress(ZstdCompressor().compress(data)) == data


def test_a_manifest_with_a_broken_sync_marker_is_refused(sqlite_catalog: Any, tmp_path: Any) -> None:
    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table("db.blocks_sync", schema=pa.schema([("id", pa.int64())]))
    for i in range(4):
        table.append(pa.table({"id": [i]}))
    entries = [
        e for m in table.current_snapshot().manifests(table.io) for e in read_manifest_entries(table.io, m)
    ]
    path = tmp_path / "two-blocks.avro"
    manifest = _write(table, entries, str(path), 2, "zstandard")
    raw = bytearray(path.read_bytes())
    sync = raw[-16:]  # every block ends with the file's sync marker
    first = raw.index(sync, raw.index(sync) + 16)  # the first block's (the header ends with one too)
    raw[first] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sync marker"):
        read_manifest_entries(table.io, manifest, discard_deleted=False)


def _entries(table: Any) -> list[Any]:
    return [
        e for m in table.current_snapshot().manifests(table.io) for e in read_manifest_entries(table.io, m)
    ]


def test_entries_read_from_the_writer_s_schema_are_copied_and_read_back_the_same(
    sqlite_catalog: Any, tmp_path: Any
) -> None:
    from airflow_provider_amoro.iceberg_compat import _ENTRY_BYTES

    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table(
        "db.copied", schema=pa.schema([("id", pa.int64()), ("s", pa.string()), ("x", pa.float64())])
    )
    for i in range(5):
        table.append(pa.table({"id": [i, -(2**40) * i], "s": [f"é{i}" * 40, None], "x": [float("nan"), i]}))
    entries = _entries(table)
    assert all(hasattr(e.data_file, _ENTRY_BYTES) for e in entries)
    copied = _write(table, entries, str(tmp_path / "copied.avro"), 2, "zstandard")
    for e in entries:
        delattr(e.data_file, _ENTRY_BYTES)  # now every entry is encoded anew
    encoded = _write(table, entries, str(tmp_path / "encoded.avro"), 2, "zstandard")
    files = [(tmp_path / name).read_bytes() for name in ("copied.avro", "encoded.avro")]
    same = [raw.replace(raw[-16:], b"\0" * 16) for raw in files]  # but for the random sync markers
    assert same[0] == same[1]

    def tuples(manifest: Any) -> list[Any]:
        return [
            (e.status, e.snapshot_id, e.sequence_number, e.file_sequence_number, e.data_file._data)
            for e in manifest.fetch_manifest_entry(table.io, discard_deleted=False)  # pyiceberg's reader
        ]

    assert tuples(copied) == tuples(encoded)
    assert [t[4][1] for t in tuples(copied)] == [e.data_file.file_path for e in entries]
    assert {t[0] for t in tuples(copied)} == {ManifestEntryStatus.DELETED}


def test_entries_of_another_manifest_schema_are_encoded(sqlite_catalog: Any) -> None:
    # v1 manifests (no sequence numbers, a v1 data_file) rewritten into v2 ones after an upgrade
    from airflow_provider_amoro.optimizing.optimize import optimize
    from airflow_provider_amoro.testing.reader import content_hash, read_table

    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table(
        "db.upgraded", schema=pa.schema([("id", pa.int64())]), properties={"format-version": "1"}
    )
    for i in range(6):
        table.append(pa.table({"id": [i, i + 10]}))
    with table.transaction() as tx:
        tx.upgrade_table_version(format_version=2)
    table.append(pa.table({"id": [99]}))  # a v2 manifest beside the v1 ones
    before = content_hash(read_table(table))
    assert optimize(table, "full").kind == "full"
    assert content_hash(read_table(table)) == before
    for snapshot in table.metadata.snapshots:
        for manifest in snapshot.manifests(table.io):
            ours = [
                (e.status, e.data_file.file_path, e.data_file.record_count)
                for e in read_manifest_entries(table.io, manifest, discard_deleted=False)
            ]
            theirs = [
                (e.status, e.data_file.file_path, e.data_file.record_count)
                for e in manifest.fetch_manifest_entry(table.io, discard_deleted=False)
            ]
            assert ours == theirs
