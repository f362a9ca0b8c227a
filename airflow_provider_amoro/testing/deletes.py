"""Commit Iceberg v2 delete files the way Flink and Spark do (pyiceberg 0.12 cannot).

- :func:`add_position_deletes`: one position delete file per partition, one ``delete`` snapshot.
- :func:`add_equality_deletes`: one equality delete file per partition, one ``delete`` snapshot.
- :func:`upsert_with_equality_deletes`: Flink-style upsert, one ``overwrite`` snapshot that adds
  the new rows as data files and an equality delete of their keys. The new data files get the same
  data sequence number as the delete, so the delete hides only older rows.

The snapshot is built by :class:`_RowDelta`, a subclass of pyiceberg's ``_FastAppendFiles``: the
parent's manifests are kept, added data files go to a new data manifest, added delete files to new
DELETES manifests (one per spec) whose entries inherit the new snapshot's sequence number. It is
committed through a pyiceberg transaction, so the catalog's optimistic concurrency (and pyiceberg's
retry with refreshed metadata) applies; a retry fails if a data file named by a position delete was
removed concurrently, as Spark's ``RowDelta.validateDataFilesExist`` does.

The writers :func:`write_position_delete_file` and :func:`write_equality_delete_file` (no commit)
live in the engine (``airflow_provider_amoro.optimizing.delete_files``) and are re-exported here.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import ValidationException
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
)
from pyiceberg.table.snapshots import Operation, SnapshotSummaryCollector, Summary, update_snapshot_summaries
from pyiceberg.typedef import EMPTY_DICT, Record

from airflow_provider_amoro.iceberg_compat import (
    FastAppendFiles,
    check_pyarrow_schema_compatible,
    dataframe_to_data_files,
    determine_partitions,
    table_of,
)
from airflow_provider_amoro.optimizing.delete_files import (
    POS_FILE_PATH_FIELD_ID,
    POSITION_DELETE_SCHEMA,
    DeleteManifestWriterV2,
    resolve_equality_ids,
    write_equality_delete_file,
    write_position_delete_file,
)
from airflow_provider_amoro.optimizing.model import FileRef, content_name, encode_partition

if TYPE_CHECKING:
    from pyiceberg.table import Table, Transaction

__all__ = [
    "POSITION_DELETE_SCHEMA",
    "add_equality_deletes",
    "add_position_deletes",
    "commit_row_delta",
    "file_refs",
    "live_data_files",
    "upsert_with_equality_deletes",
    "write_equality_delete_file",
    "write_position_delete_file",
]


class _RowDelta(FastAppendFiles):
    """A snapshot that keeps every existing manifest and adds data files and delete files."""

    def __init__(
        self,
        transaction: Transaction,
        *,
        operation: Operation,
        data_files: Sequence[DataFile],
        delete_files: Sequence[DataFile],
        referenced_data_files: Iterable[str] = (),
        snapshot_properties: dict[str, str] = EMPTY_DICT,
    ) -> None:
        super().__init__(
            operation, transaction, table_of(transaction).io, snapshot_properties=snapshot_properties
        )
        for data_file in data_files:
            self.append_data_file(data_file)
        self._added_delete_files = list(delete_files)
        self._referenced_data_files = set(referenced_data_files)

    def _validate_concurrency(self) -> None:
        """On a retry after a concurrent commit: the data files named by position deletes must be live."""
        if not self._referenced_data_files or self._commit_window is None or self._commit_window.is_empty():
            return
        head = self._commit_window.head
        live = (
            set() if head is None else set(live_data_files_of(table_of(self._transaction), head.snapshot_id))
        )
        gone = self._referenced_data_files - live
        if gone:
            raise ValidationException(f"Data files were concurrently removed: {sorted(gone)}")

    def _manifests(self) -> list[ManifestFile]:
        manifests = super()._manifests()
        by_spec: dict[int, list[DataFile]] = defaultdict(list)
        for delete_file in self._added_delete_files:
            by_spec[delete_file.spec_id].append(delete_file)
        delete_manifests = []
        for spec_id, files in sorted(by_spec.items()):
            writer = DeleteManifestWriterV2(
                self.spec(spec_id),
                self.schema(),
                self.new_manifest_output(),
                self._snapshot_id,
                self._compression,
            )
            with writer:
                for delete_file in files:
                    writer.add_entry(
                        ManifestEntry.from_args(
                            status=ManifestEntryStatus.ADDED,
                            snapshot_id=self._snapshot_id,
                            sequence_number=None,
                            file_sequence_number=None,
                            data_file=delete_file,
                        )
                    )
            delete_manifests.append(writer.to_manifest_file())
        return manifests + delete_manifests

    def _summary(self, snapshot_properties: dict[str, str] = EMPTY_DICT) -> Summary:
        metadata = self._transaction.table_metadata
        schema = metadata.schema()
        specs = metadata.specs()
        limit = int(metadata.properties.get("write.summary.partition-limit", "0"))
        collector = SnapshotSummaryCollector(partition_summary_limit=limit)
        for data_file in self._added_data_files:
            collector.add_file(data_file, schema=schema, partition_spec=metadata.spec())
        for delete_file in self._added_delete_files:
            collector.add_file(delete_file, schema=schema, partition_spec=specs[delete_file.spec_id])
        parent = (
            metadata.snapshot_by_id(self._parent_snapshot_id)
            if self._parent_snapshot_id is not None
            else None
        )
        return update_snapshot_summaries(
            summary=Summary(operation=self._operation, **collector.build(), **snapshot_properties),
            previous_summary=parent.summary if parent is not None else None,
        )


def commit_row_delta(
    table: Table,
    *,
    data_files: Sequence[DataFile] = (),
    delete_files: Sequence[DataFile] = (),
    referenced_data_files: Iterable[str] = (),
    snapshot_properties: Mapping[str, str] | None = None,
) -> Table:
    """Commit one snapshot adding ``data_files`` and ``delete_files`` (Iceberg's RowDelta).

    The operation is ``overwrite`` when data files are added, else ``delete``. New entries inherit
    the new snapshot's sequence number.

    Args:
        table: the table; refreshed in place by the commit.
        data_files: data files to add (written in the table's current spec).
        delete_files: position/equality delete files to add (any spec of the table).
        referenced_data_files: data file paths the position deletes name; on a retry after a
            concurrent commit, the commit fails if one of them is no longer live.
        snapshot_properties: extra snapshot summary properties.

    Returns:
        The table (same object), with the new snapshot current.
    """
    if not data_files and not delete_files:
        raise ValueError("nothing to commit")
    operation = Operation.OVERWRITE if data_files else Operation.DELETE
    with table.transaction() as tx:
        _RowDelta(
            tx,
            operation=operation,
            data_files=data_files,
            delete_files=delete_files,
            referenced_data_files=referenced_data_files,
            snapshot_properties=dict(snapshot_properties or {}),
        ).commit()
    return table


def live_data_files_of(table: Table, snapshot_id: int | None = None) -> dict[str, DataFile]:
    """Live data files (content DATA) of a snapshot (default: current), by path."""
    snapshot = table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(snapshot_id)
    if snapshot is None:
        return {}
    result: dict[str, DataFile] = {}
    for manifest in snapshot.manifests(table.io):
        if manifest.content != ManifestContent.DATA:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.data_file.content == DataFileContent.DATA:
                result[entry.data_file.file_path] = entry.data_file
    return result


def file_refs(table: Table, snapshot_id: int | None = None) -> tuple[list[FileRef], list[FileRef]]:
    """``(data files, delete files)`` of a snapshot (default: current) as plan ``FileRef`` objects.

    A simple scan for tests: every live file, with its data and file sequence numbers.
    """
    snapshot = table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(snapshot_id)
    data: list[FileRef] = []
    deletes: list[FileRef] = []
    if snapshot is None:
        return data, deletes
    for manifest in snapshot.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            f = entry.data_file
            ref = FileRef(
                path=f.file_path,
                content=content_name(f.content),
                size_bytes=f.file_size_in_bytes,
                record_count=f.record_count,
                spec_id=f.spec_id,
                partition=encode_partition(f.partition),
                data_sequence_number=entry.sequence_number or 0,
                file_sequence_number=entry.file_sequence_number,
                equality_ids=list(f.equality_ids) if f.equality_ids else None,
                referenced_data_file=_single_referenced_file(f),
            )
            (data if f.content == DataFileContent.DATA else deletes).append(ref)
    return sorted(data, key=lambda r: r.path), sorted(deletes, key=lambda r: r.path)


def _single_referenced_file(f: DataFile) -> str | None:
    """The one data file a position delete file names (equal ``file_path`` bounds), else None."""
    if f.content != DataFileContent.POSITION_DELETES:
        return None
    lower = (f.lower_bounds or {}).get(POS_FILE_PATH_FIELD_ID)
    upper = (f.upper_bounds or {}).get(POS_FILE_PATH_FIELD_ID)
    return lower.decode() if lower is not None and lower == upper else None


def live_data_files(table: Table) -> list[DataFile]:
    """Live data files of the table's current snapshot (for choosing what to delete in tests)."""
    return list(live_data_files_of(table).values())


def add_position_deletes(
    table: Table,
    deletes: Mapping[str, Sequence[int]] | Iterable[tuple[str, int]],
    *,
    snapshot_properties: Mapping[str, str] | None = None,
) -> Table:
    """Delete rows by position: one position delete file per partition, committed in one snapshot.

    Args:
        table: the table.
        deletes: ``{data_file_path: [row positions]}`` or ``(data_file_path, pos)`` pairs; the paths
            must be live data files of the current snapshot (exact ``file_path`` strings).
        snapshot_properties: extra snapshot summary properties.

    Returns:
        The table, refreshed, with a new ``delete`` snapshot.

    Raises:
        ValueError: a path is not a live data file, or a position is outside the file.
    """
    pairs = (
        [(path, int(pos)) for path, positions in deletes.items() for pos in positions]
        if isinstance(deletes, Mapping)
        else [(path, int(pos)) for path, pos in deletes]
    )
    if not pairs:
        raise ValueError("no position deletes given")
    live = live_data_files_of(table)
    groups: dict[tuple[int, Record], list[tuple[str, int]]] = defaultdict(list)
    for path, pos in pairs:
        data_file = live.get(path)
        if data_file is None:
            raise ValueError(f"not a live data file of the current snapshot: {path}")
        if not 0 <= pos < data_file.record_count:
            raise ValueError(f"position {pos} outside {path} ({data_file.record_count} rows)")
        groups[(data_file.spec_id, data_file.partition)].append((path, pos))
    written: list[DataFile] = []
    try:
        for (spec_id, partition), group in groups.items():
            written.append(write_position_delete_file(table, group, spec_id=spec_id, partition=partition))
        return commit_row_delta(
            table,
            delete_files=written,
            referenced_data_files={p for p, _ in pairs},
            snapshot_properties=snapshot_properties,
        )
    except BaseException:
        _remove_files(table, written)
        raise


def _equality_delete_files(table: Table, rows: pa.Table, equality_ids: list[int]) -> list[DataFile]:
    """Write one equality delete file per partition of the current spec (partition from the rows)."""
    spec = table.spec()
    schema = table.schema()
    names = [schema.find_column_name(i) for i in equality_ids]
    written: list[DataFile] = []
    try:
        if spec.is_unpartitioned():
            written.append(
                write_equality_delete_file(
                    table, rows, equality_ids, spec_id=spec.spec_id, partition=Record()
                )
            )
            return written
        sources = [schema.find_column_name(f.source_id) for f in spec.fields]
        needed = list(dict.fromkeys([*(n for n in names if n), *(s for s in sources if s)]))
        absent = [n for n in needed if n not in rows.column_names]
        if absent:
            raise ValueError(f"rows lack columns {absent} (equality and partition source columns are needed)")
        for part in determine_partitions(spec, schema, rows.select(needed)):
            written.append(
                write_equality_delete_file(
                    table,
                    part.arrow_table_partition,
                    equality_ids,
                    spec_id=spec.spec_id,
                    partition=part.partition_key.partition,
                )
            )
        return written
    except BaseException:
        _remove_files(table, written)
        raise


def add_equality_deletes(
    table: Table,
    rows: pa.Table,
    columns: Sequence[str | int],
    *,
    snapshot_properties: Mapping[str, str] | None = None,
) -> Table:
    """Delete rows by key: one equality delete file per partition, committed in one snapshot.

    Each delete is scoped to the partition computed from its row with the current spec's
    transforms, so ``rows`` must also hold the partition source columns. It hides rows of data
    files with a lower data sequence number in that partition (NULL equals NULL).

    Args:
        table: the table.
        rows: the keys to delete (extra columns are ignored).
        columns: equality columns, by name or field id.
        snapshot_properties: extra snapshot summary properties.

    Returns:
        The table, refreshed, with a new ``delete`` snapshot.
    """
    if rows.num_rows == 0:
        raise ValueError("no equality deletes given")
    equality_ids = resolve_equality_ids(table.schema(), columns)
    written = _equality_delete_files(table, rows, equality_ids)
    try:
        return commit_row_delta(table, delete_files=written, snapshot_properties=snapshot_properties)
    except BaseException:
        _remove_files(table, written)
        raise


def upsert_with_equality_deletes(
    table: Table,
    rows: pa.Table,
    key_columns: Sequence[str | int],
    *,
    snapshot_properties: Mapping[str, str] | None = None,
) -> Table:
    """Flink-style upsert: add ``rows`` and an equality delete of their keys in ONE snapshot.

    The new data files and the delete share the snapshot's sequence number, so the delete removes
    only older rows with the same key in the same partition (as Flink, a key that moves to another
    partition leaves its old row alive: keep the partition source columns in the key).

    Args:
        table: the table.
        rows: complete rows in the table's schema; keys must be unique within ``rows``.
        key_columns: the key (equality) columns, by name or field id.
        snapshot_properties: extra snapshot summary properties.

    Returns:
        The table, refreshed, with a new ``overwrite`` snapshot.

    Raises:
        ValueError: empty rows, duplicate keys, or rows not matching the table schema.
    """
    if rows.num_rows == 0:
        raise ValueError("no rows to upsert")
    schema = table.schema()
    equality_ids = resolve_equality_ids(schema, key_columns)
    names = [schema.find_column_name(i) or "" for i in equality_ids]
    counts = rows.group_by(names).aggregate([([], "count_all")])
    if pc.max(counts.column("count_all")).as_py() > 1:
        raise ValueError(f"duplicate keys {names} in upsert rows")
    check_pyarrow_schema_compatible(schema, provided_schema=rows.schema, format_version=table.format_version)
    written: list[DataFile] = []
    try:
        written.extend(dataframe_to_data_files(table.metadata, rows, table.io))
        data_files = list(written)
        delete_files = _equality_delete_files(table, rows, equality_ids)
        written.extend(delete_files)
        return commit_row_delta(
            table, data_files=data_files, delete_files=delete_files, snapshot_properties=snapshot_properties
        )
    except BaseException:
        _remove_files(table, written)
        raise


def _remove_files(table: Table, files: Iterable[DataFile]) -> None:
    for data_file in files:
        with contextlib.suppress(Exception):  # best effort: no snapshot references these files
            table.io.delete(data_file.file_path)
