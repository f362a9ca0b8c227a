"""List the live data and delete files of a snapshot as small :class:`FileRef` objects, fast.

Planning on a large table is where Amoro's users most often report slowness and memory trouble, so
this module reads the snapshot's manifests itself instead of building pyiceberg scan tasks:

- manifests are read in parallel (a thread pool; Avro decoding and file IO overlap),
- each manifest is *streamed*: one manifest entry at a time becomes a :class:`FileRef` (a few
  hundred bytes) and the pyiceberg ``DataFile`` with its column statistics is dropped at once,
- equal partition tuples are shared between the ``FileRef`` objects of a partition.

:class:`DeleteFileIndex` indexes delete files by ``(spec_id, partition)`` and by data sequence number,
so matching deletes to data files costs a dictionary look-up and a binary search per data file,
not a pass over every delete file; :func:`model.delete_applies` stays the one rule deciding
whether a delete applies.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
)

from airflow_provider_amoro.optimizing.delete_files import POS_FILE_PATH_FIELD_ID
from airflow_provider_amoro.optimizing.manifests import MANIFEST_CACHE, READ_THREADS, paused_gc
from airflow_provider_amoro.optimizing.model import (
    FileContent,
    FileRef,
    content_name,
    decode_value,
    delete_applies,
    encode_value,
)

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table


#: Threads fetching manifests from storage (decoding stays on the calling thread, see manifests.py).
DEFAULT_SCAN_THREADS = READ_THREADS

PartitionKey = tuple[int, tuple[Hashable, ...]]


def _hashable(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    return value  # type: ignore[no-any-return]


def partition_key(ref: FileRef) -> PartitionKey:
    """``(spec_id, partition values)`` of a file as a hashable key."""
    return ref.spec_id, tuple(_hashable(v) for v in ref.partition)


@dataclass
class LiveFiles:
    """The live files of one snapshot.

    Attributes:
        snapshot_id: the snapshot listed (None: the table has no snapshot).
        sequence_number: that snapshot's sequence number (0 on v1 tables, None without snapshot).
        format_version: the table's format version.
        data_files: live data files, in manifest order.
        delete_files: live position and equality delete files, in manifest order.
        specs: the table's partition specs by id.
        schema: the table's current schema.
        filtered: whether ``self-optimizing.filter`` (or another filter) left files out.
    """

    snapshot_id: int | None
    sequence_number: int | None
    format_version: int
    data_files: list[FileRef] = field(default_factory=list)
    delete_files: list[FileRef] = field(default_factory=list)
    specs: dict[int, PartitionSpec] = field(default_factory=dict)
    schema: Schema | None = None
    filtered: bool = False

    def delete_index(self) -> DeleteFileIndex:
        """An index of :attr:`delete_files` for matching them to data files."""
        return DeleteFileIndex(self.delete_files)

    def partition_path(self, spec_id: int, partition: Sequence[Any]) -> str:
        """Human-readable partition, e.g. ``day=2024-01-01/bucket=3`` (empty for unpartitioned)."""
        return partition_path(self.specs, self.schema, spec_id, partition)


def partition_path(
    specs: dict[int, PartitionSpec], schema: Schema | None, spec_id: int, partition: Sequence[Any]
) -> str:
    """Human-readable path of an encoded partition tuple of ``spec_id`` (``field=value/…``)."""
    spec = specs.get(spec_id)
    if spec is None or schema is None or not partition:
        return "/".join(f"{i}={v}" for i, v in enumerate(partition))
    try:
        types = spec.partition_type(schema).fields
    except Exception:  # noqa: BLE001 - a dropped source column: fall back to raw values
        return "/".join(f"{f.name}={v}" for f, v in zip(spec.fields, partition, strict=False))
    parts = []
    for pf, nf, raw in zip(spec.fields, types, partition, strict=False):
        value = decode_value(raw)
        try:
            text = pf.transform.to_human_string(nf.field_type, value)
        except Exception:  # noqa: BLE001 - unusual value types: show the raw value
            text = str(value)
        parts.append(f"{pf.name}={text}")
    return "/".join(parts)


class _Sorted:
    """Delete files of one kind in one partition, sorted by data sequence number."""

    __slots__ = ("files", "seqs", "suffix_records")

    def __init__(self, files: list[FileRef]) -> None:
        files.sort(key=lambda f: (f.data_sequence_number, f.path))
        self.files = files
        self.seqs = [f.data_sequence_number for f in files]
        # suffix_records[i] = sum of record counts of files[i:]
        suffix = [0] * (len(files) + 1)
        for i in range(len(files) - 1, -1, -1):
            suffix[i] = suffix[i + 1] + files[i].record_count
        self.suffix_records = suffix


class DeleteFileIndex:
    """Delete files indexed by ``(spec_id, partition)``, kind and data sequence number.

    - Deletes written with an unpartitioned spec (empty partition tuple) are global: candidates for
      every data file.
    - Within a partition, position and equality deletes are each sorted by data sequence number, so
      the deletes that may apply to a data file are a suffix found by binary search (position
      deletes from an equal sequence number on, equality deletes from a greater one).
    - File-scoped position deletes (``referenced_data_file``) are indexed by that path.
    - Position deletes with ``file_path`` bounds are kept apart: :meth:`summary` and
      :meth:`for_data_file` count them only for data files whose path lies within the bounds
      (as Iceberg's and Amoro's scans do), so one small delete file does not mark every file of
      its partition for rewrite. The planner's :meth:`for_data_files` stays conservative.

    :meth:`for_data_file` and :meth:`for_data_files` confirm every candidate with
    :func:`model.delete_applies`, the one rule; :meth:`summary` counts the same suffixes with
    prefix sums (O(log n) per data file), which the tests check against ``delete_applies``.
    """

    def __init__(self, deletes: Iterable[FileRef]) -> None:
        """Build the index.

        Args:
            deletes: position and equality delete files.
        """
        pos: dict[PartitionKey | None, list[FileRef]] = {}
        bounded: dict[PartitionKey | None, list[FileRef]] = {}
        eq: dict[PartitionKey | None, list[FileRef]] = {}
        self._referenced: dict[str, list[FileRef]] = {}
        self._count = 0
        for d in deletes:
            self._count += 1
            if d.content == "position_deletes":
                if d.referenced_data_file is not None:
                    self._referenced.setdefault(d.referenced_data_file, []).append(d)
                    continue
                target = pos if d.path_lower is None and d.path_upper is None else bounded
            elif d.content == "equality_deletes":
                target = eq
            else:
                raise ValueError(f"not a delete file: {d.path}")
            target.setdefault(partition_key(d) if d.partition else None, []).append(d)
        self._pos = {k: _Sorted(v) for k, v in pos.items()}
        self._bounded = {k: _Sorted(v) for k, v in bounded.items()}
        self._eq = {k: _Sorted(v) for k, v in eq.items()}
        # (spec_id, id(partition list)) -> (that list, its key): FileRefs from one scan share their
        # partition lists, so most look-ups skip building the key; the identity check guards reuse
        self._keys: dict[tuple[int, int], tuple[list[Any], PartitionKey]] = {}

    def key_of(self, ref: FileRef) -> PartitionKey:
        """:func:`partition_key` of ``ref``, cached by the identity of its partition list."""
        part = ref.partition
        slot = (ref.spec_id, id(part))
        hit = self._keys.get(slot)
        if hit is not None and hit[0] is part:
            return hit[1]
        key = partition_key(ref)
        self._keys[slot] = (part, key)
        return key

    def __len__(self) -> int:
        """Number of indexed delete files."""
        return self._count

    def _candidates(self, key: PartitionKey, min_seq: int, paths: Iterable[str]) -> Iterator[FileRef]:
        """Deletes that may apply to a data file of ``key`` with data sequence number >= ``min_seq``."""
        for k in (key, None):
            for group in (self._pos.get(k), self._bounded.get(k)):
                if group is not None:
                    yield from itertools.islice(group.files, bisect.bisect_left(group.seqs, min_seq), None)
            group = self._eq.get(k)
            if group is not None:
                yield from itertools.islice(group.files, bisect.bisect_right(group.seqs, min_seq), None)
        for path in paths:
            yield from self._referenced.get(path, ())

    def for_data_file(self, data: FileRef) -> list[FileRef]:
        """Every delete file that applies to ``data``, by :func:`model.delete_applies`."""
        return [
            d
            for d in self._candidates(self.key_of(data), data.data_sequence_number, (data.path,))
            if delete_applies(d, data) and (d.content != "position_deletes" or d.may_reference(data.path))
        ]

    def summary(self, data: FileRef, key: PartitionKey | None = None) -> tuple[int, int, int]:
        """``(position delete files, position delete records, equality delete files)`` applying to ``data``.

        Counts exactly the files :meth:`for_data_file` returns, without building the list.
        ``key`` is ``partition_key(data)`` when the caller already has it.
        """
        if key is None:
            key = self.key_of(data)
        seq = data.data_sequence_number
        pos_files = pos_records = eq_files = 0
        for k in (key, None):
            group = self._pos.get(k)
            if group is not None:
                i = bisect.bisect_left(group.seqs, seq)
                pos_files += len(group.files) - i
                pos_records += group.suffix_records[i]
            group = self._bounded.get(k)
            if group is not None:
                for d in itertools.islice(group.files, bisect.bisect_left(group.seqs, seq), None):
                    if d.may_reference(data.path):
                        pos_files += 1
                        pos_records += d.record_count
            group = self._eq.get(k)
            if group is not None:
                eq_files += len(group.files) - bisect.bisect_right(group.seqs, seq)
        for d in self._referenced.get(data.path, ()):
            if delete_applies(d, data):
                pos_files += 1
                pos_records += d.record_count
        return pos_files, pos_records, eq_files

    def for_data_files(self, data_files: Sequence[FileRef]) -> list[FileRef]:
        """Every delete file that applies to at least one of ``data_files`` (sorted by path, no repeats).

        Within one partition the sequence-number rules are monotonic, so a delete that is not
        file-scoped applies to some file iff it applies to the file with the lowest data sequence
        number; only that file is checked with :func:`model.delete_applies`.
        """
        if not data_files:
            return []
        first = data_files[0]
        if all(f.spec_id == first.spec_id and f.partition == first.partition for f in data_files):
            by_key: dict[PartitionKey, list[FileRef]] = {self.key_of(first): list(data_files)}
        else:
            by_key = {}
            for f in data_files:
                by_key.setdefault(self.key_of(f), []).append(f)
        out: dict[str, FileRef] = {}
        for key, files in by_key.items():
            oldest = min(files, key=lambda f: f.data_sequence_number)
            by_path = {f.path: f for f in files if f.path in self._referenced} if self._referenced else {}
            for d in self._candidates(key, oldest.data_sequence_number, by_path):
                if d.path in out:
                    continue
                if d.referenced_data_file is not None:
                    target = by_path.get(d.referenced_data_file)
                    applies = target is not None and delete_applies(d, target)
                else:
                    applies = delete_applies(d, oldest)
                if applies:
                    out[d.path] = d
        return sorted(out.values(), key=lambda f: f.path)

    def dangling(self, data_files: Iterable[FileRef]) -> list[FileRef]:
        """Delete files that apply to none of ``data_files`` (sorted by path)."""
        oldest: dict[PartitionKey, FileRef] = {}
        by_path: dict[str, FileRef] = {}
        for f in data_files:
            key = self.key_of(f)
            current = oldest.get(key)
            if current is None or f.data_sequence_number < current.data_sequence_number:
                oldest[key] = f
            if f.path in self._referenced:
                by_path[f.path] = f
        oldest_all = min(oldest.values(), key=lambda o: o.data_sequence_number, default=None)
        out: list[FileRef] = []
        for groups in (self._pos, self._bounded, self._eq):
            for group_key, group in groups.items():
                for d in group.files:
                    # a delete applies to some file of its partition iff it applies to the one with
                    # the lowest data sequence number there (sequence rules are monotonic)
                    if group_key is None:  # global: the oldest data file of the table decides
                        applies = oldest_all is not None and delete_applies(d, oldest_all)
                    else:
                        target = oldest.get(group_key)
                        applies = target is not None and delete_applies(d, target)
                    if not applies:
                        out.append(d)
        for path, refs in self._referenced.items():
            data = by_path.get(path)
            out.extend(d for d in refs if data is None or not delete_applies(d, data))
        return sorted(out, key=lambda f: f.path)


@dataclass
class _ScanContext:
    partition_filters: dict[int, Callable[[Any], bool]] | None
    metrics_filter: Callable[[DataFile], bool] | None
    # shared by the manifests of one scan: equal partition tuples become one list object
    partitions: dict[tuple[int, tuple[Hashable, ...]], list[Any]] = field(default_factory=dict)


def _path_bound(df: DataFile, upper: bool) -> str | None:
    """The ``file_path`` lower or upper bound of a position-delete file, when readable as text."""
    bounds = df.upper_bounds if upper else df.lower_bounds
    raw = (bounds or {}).get(POS_FILE_PATH_FIELD_ID)
    if raw is None:
        return None
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:  # a truncated multi-byte bound: unknown, so never excludes a file
        return None


def _referenced_data_file(df: DataFile) -> str | None:
    ref = getattr(df, "referenced_data_file", None)
    if ref:
        return str(ref)
    lower, upper = df.lower_bounds, df.upper_bounds
    if lower and upper:
        lo, hi = lower.get(POS_FILE_PATH_FIELD_ID), upper.get(POS_FILE_PATH_FIELD_ID)
        if lo is not None and lo == hi:
            return bytes(lo).decode("utf-8")
    return None


def _manifest_refs(
    ctx: _ScanContext, manifest: ManifestFile, entries: list[ManifestEntry]
) -> tuple[list[FileRef], list[FileRef], bool]:
    """One manifest's live entries as FileRefs: (data, deletes, filtered_any)."""
    data: list[FileRef] = []
    deletes: list[FileRef] = []
    filtered = False
    spec_id = manifest.partition_spec_id
    manifest_seq = manifest.sequence_number or 0
    part_filter = ctx.partition_filters.get(spec_id) if ctx.partition_filters is not None else None
    shared = ctx.partitions
    for entry in entries:
        status = entry.status
        if status == ManifestEntryStatus.DELETED:
            continue
        df = entry.data_file
        content = df.content
        if part_filter is not None and not part_filter(df.partition):
            filtered = True
            continue
        if content == DataFileContent.DATA and ctx.metrics_filter is not None and not ctx.metrics_filter(df):
            filtered = True
            continue
        # sequence number inheritance (Iceberg spec): null means "inherit" for ADDED entries
        seq = entry.sequence_number
        if seq is None:
            seq = manifest_seq
        file_seq = entry.file_sequence_number
        if file_seq is None and (manifest_seq == 0 or status == ManifestEntryStatus.ADDED):
            file_seq = manifest_seq
        raw = df.partition
        values = tuple(raw[i] for i in range(len(raw))) if raw is not None else ()
        pkey = (spec_id, values)  # Iceberg partition values are all hashable
        part = shared.get(pkey)
        if part is None:
            part = shared.setdefault(pkey, [encode_value(v) for v in values])
        name: FileContent = content_name(content)
        fmt = df.file_format
        ref = FileRef(
            path=df.file_path,
            content=name,
            size_bytes=int(df.file_size_in_bytes),
            record_count=int(df.record_count),
            spec_id=spec_id,
            partition=part,
            data_sequence_number=int(seq),
            file_sequence_number=None if file_seq is None else int(file_seq),
            equality_ids=list(df.equality_ids) if df.equality_ids else None,
            file_format=fmt.value if isinstance(fmt, FileFormat) else str(fmt),
            referenced_data_file=_referenced_data_file(df)
            if content == DataFileContent.POSITION_DELETES
            else None,
            path_lower=_path_bound(df, False) if content == DataFileContent.POSITION_DELETES else None,
            path_upper=_path_bound(df, True) if content == DataFileContent.POSITION_DELETES else None,
            sort_order_id=df.sort_order_id if content == DataFileContent.DATA else None,
        )
        (data if content == DataFileContent.DATA else deletes).append(ref)
    return data, deletes, filtered


def _partition_filters(
    schema: Schema, specs: dict[int, PartitionSpec], row_filter: BooleanExpression
) -> dict[int, Callable[[Any], bool]]:
    from pyiceberg.expressions.visitors import expression_evaluator, inclusive_projection
    from pyiceberg.schema import Schema as _Schema

    out: dict[int, Callable[[Any], bool]] = {}
    for spec_id, spec in specs.items():
        projected = inclusive_projection(schema, spec, case_sensitive=False)(row_filter)
        try:
            partition_schema = _Schema(*spec.partition_type(schema).fields)
        except Exception:  # noqa: BLE001 - spec on a dropped column: keep its files
            continue
        out[spec_id] = expression_evaluator(partition_schema, projected, case_sensitive=False)
    return out


def live_files(
    table: Table,
    snapshot_id: int | None = None,
    *,
    row_filter: BooleanExpression | None = None,
    threads: int = DEFAULT_SCAN_THREADS,
) -> LiveFiles:
    """List the live data and delete files of a snapshot.

    Args:
        table: the pyiceberg table.
        snapshot_id: the snapshot to list; None for the current snapshot.
        row_filter: an unbound predicate (e.g. ``OptimizingConfig.filter_expression``): files whose
            partition (every file) or column metrics (data files) show that no row can match are left
            out. Delete files are never excluded by metrics, only by partition.
        threads: manifests fetched from storage at the same time (they are decoded one at a time).

    Returns:
        The snapshot's live files; for a table without snapshots, no files and ``snapshot_id`` None.

    Raises:
        ValueError: ``snapshot_id`` is not a snapshot of the table.
    """
    metadata = table.metadata
    schema = table.schema()
    specs = dict(table.specs())
    if snapshot_id is None:
        snapshot = table.current_snapshot()
    else:
        snapshot = table.snapshot_by_id(snapshot_id)
        if snapshot is None:
            raise ValueError(f"snapshot {snapshot_id} is not a snapshot of {table.name()}")
    result = LiveFiles(
        snapshot_id=None,
        sequence_number=None,
        format_version=int(metadata.format_version),
        specs=specs,
        schema=schema,
    )
    if snapshot is None:
        return result
    result.snapshot_id = snapshot.snapshot_id
    result.sequence_number = int(snapshot.sequence_number or 0)

    partition_filters = None
    metrics_filter = None
    if row_filter is not None:
        from airflow_provider_amoro.iceberg_compat import InclusiveMetricsEvaluator

        partition_filters = _partition_filters(schema, specs, row_filter)
        metrics_filter = InclusiveMetricsEvaluator(
            schema, row_filter, case_sensitive=False, include_empty_files=True
        ).eval

    ctx = _ScanContext(partition_filters, metrics_filter)
    manifests = MANIFEST_CACHE.manifest_list(table.io, snapshot)
    if not manifests:
        return result
    read = MANIFEST_CACHE.read_all(table.io, manifests, threads)
    with paused_gc():
        for manifest, entries in zip(manifests, read, strict=True):
            data, deletes, filtered = _manifest_refs(ctx, manifest, entries)
            result.data_files.extend(data)
            result.delete_files.extend(deletes)
            result.filtered = result.filtered or filtered
    return result
