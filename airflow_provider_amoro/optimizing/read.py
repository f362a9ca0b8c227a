"""Streaming reads of a task's data files with position and equality deletes applied.

How it works, per task:

1. :meth:`DeleteIndex.load` reads every delete file of the task once (in parallel threads):
   position deletes are kept as ``{data file path: positions}`` for the task's data files only;
   equality deletes are kept as Arrow tables of their keys, projected by field id to the read schema.
   This is the only part of a task held in memory whole, as in every Iceberg engine.
2. :meth:`DeleteIndex.deleted_positions` turns every delete that applies to a data file
   (``model.delete_applies``: sequence numbers, spec and partition) into row positions: position
   deletes directly (matching ``file_path``); equality deletes by reading only the key columns of
   the data files and joining them (Arrow hash join, NULL equals NULL as Iceberg requires) with
   the delete keys reduced to the newest delete sequence number per key and partition scope.
   :meth:`DeleteIndex.resolve_equality` does this for many data files in one join, so each delete
   key is hashed once per batch of files (not per file, not per record batch); no Python loop
   runs over rows.
3. :func:`read_task_batches` streams the data file in record batches (pyarrow's threaded dataset
   scanner), drops the deleted positions with a vectorised mask, and projects every batch to the
   requested schema (default: the table's current schema) by field id: added columns become NULL
   (or the identity-partition value for files that lack the column), renamed columns are found by
   id, promoted types are cast. All batches share one Arrow schema.
4. The fast path (the usual case: compaction of many small delete-free files): the data files that
   no delete touches (``DeleteIndex.deleted_positions`` is empty) have their Parquet footers read
   at once on a few threads, and their row counts checked against the plan. Consecutive such files
   whose physical schema maps to the read schema directly by field id (same columns, order and
   types up to string offset width; :class:`_Projection` ``direct``) are read by threaded
   multi-file ``pyarrow.dataset`` scans over fragments that keep those footers (no second footer
   read, no per-file Python work, string offsets widened by the scan's own threads), one group of
   about 8 MB of files at a time, on a producer thread at most 32 MB of rows ahead of the writer (a
   single scan over all files would decode far ahead of the encoder and hold most of the task in
   memory); the rows they yield are counted against the plan once more. Files with deletes or
   evolved schemas, and FileIOs that are not pyiceberg's ``PyArrowFileIO``, keep the per-file
   path of step 3. Files go in windows (32 files, doubling up to 512): the next window's footers
   are read while the current one is scanned, so footer reads overlap the scan as in a plain
   dataset scan, and at most two windows of footers are held. Errors stay per file: a missing,
   unreadable or short file fails before any row of its window is read, a corrupt page fails the
   scan and names its file.

Rewrite-pos reuses step 2: the positions it returns, as one position delete file, replace the
task's delete files without reading the data columns.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import PyArrowFileIO, pyarrow_to_schema, schema_to_pyarrow
from pyiceberg.schema import Schema, prune_columns
from pyiceberg.transforms import IdentityTransform

from airflow_provider_amoro.iceberg_compat import to_requested_schema
from airflow_provider_amoro.optimizing.model import FileRef, decode_partition, delete_applies

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    from pyiceberg.table import Table

DEFAULT_BATCH_ROWS = 131072
"""Rows per record batch read from a data file."""
PREFETCH_FILE_BYTES = 8 * 1024 * 1024
"""Data files up to this size are read whole, ahead of time, on a small thread pool."""
PREFETCH_BYTES = 12 * 1024 * 1024
"""At most this many bytes of such files (plus one) are read ahead at once: about 3-4x as many
bytes of decoded Arrow rows wait for the writer (32 MB held ~120 MB of rows for 5 MB files)."""
PREFETCH_FILES = 16
"""At most this many files are read ahead at once."""
PREFETCH_THREADS = 4
"""Threads reading small files ahead."""
FOOTER_THREADS = 8
"""Threads reading the Parquet footers of the delete-free files of a task (fast path)."""
SCAN_GROUP_BYTES = 8 * 1024 * 1024
"""Delete-free input files are scanned in groups of about this many (Parquet) bytes."""
SCAN_AHEAD_BYTES = 32 * 1024 * 1024
"""Bytes of decoded batches the scan of delete-free inputs keeps ready ahead of the writer."""
FOOTER_CHUNK = 16
"""Footers read by one thread task (fewer, larger thread tasks: less Python overhead per file)."""
FIRST_WINDOW = 32
"""Files in the first window of the fast path; windows double up to :data:`MAX_WINDOW`."""
MAX_WINDOW = 512
"""At most this many files per fast-path window."""

_POS = "__amoro_pos"
_FILE = "__amoro_file"
_DSEQ = "__amoro_data_seq"
_SCOPE = "__amoro_scope"
_ESEQ = "__amoro_delete_seq"
_ESCOPE = "__amoro_delete_scope"
_GLOBAL_SCOPE = -1

Positions = npt.NDArray[np.int64]
_EMPTY: Positions = np.empty(0, dtype=np.int64)


class InputFileError(RuntimeError):
    """An input file of a task is missing, unreadable, or not what the plan described."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read input file {path}: {reason}")
        self.path = path


def output_arrow_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema of the batches :func:`read_task_batches` yields for ``schema`` (no field ids)."""
    return schema_to_pyarrow(schema, include_field_ids=False)


@dataclass
class _EqualityDeletes:
    ref: FileRef
    names: tuple[str, ...]
    keys: pa.Table


@dataclass
class DeleteIndex:
    """The deletes of one task, loaded once; answers "which rows of this data file are deleted".

    Attributes:
        positions: per position delete file (by path): ``{data file path: sorted positions}``.
        equality: the equality delete files with their keys (columns named as in the read schema).
    """

    table: Table
    schema: Schema
    pos_refs: list[FileRef] = field(default_factory=list)
    positions: dict[str, dict[str, Positions]] = field(default_factory=dict)
    equality: list[_EqualityDeletes] = field(default_factory=list)
    equality_positions: dict[str, Positions] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        table: Table,
        data_files: Sequence[FileRef],
        delete_files: Sequence[FileRef],
        *,
        schema: Schema | None = None,
        max_workers: int = 4,
    ) -> DeleteIndex:
        """Read the delete files that apply to at least one of ``data_files``.

        Args:
            table: the table (its FileIO and name mapping are used).
            data_files: the data files that will be read.
            delete_files: candidate delete files (typically ``RewriteTask.delete_files``).
            schema: the read schema (default: the table's current schema).
            max_workers: threads reading delete files.

        Raises:
            InputFileError: a delete file is missing or unreadable.
        """
        schema = schema or table.schema()
        index = cls(table=table, schema=schema)
        paths = {d.path for d in data_files}
        relevant = [d for d in delete_files if any(delete_applies(d, f) for f in data_files)]
        pos_refs = [d for d in relevant if d.content == "position_deletes"]
        eq_refs = [d for d in relevant if d.content == "equality_deletes"]

        def read_pos(ref: FileRef) -> dict[str, Positions]:
            return _read_position_deletes(table, ref, paths)

        def read_eq(ref: FileRef) -> _EqualityDeletes:
            return _read_equality_deletes(table, ref, schema)

        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            pos_results = list(pool.map(read_pos, pos_refs))
            eq_results = list(pool.map(read_eq, eq_refs))
        index.pos_refs = pos_refs
        index.positions = {ref.path: res for ref, res in zip(pos_refs, pos_results, strict=True)}
        index.equality = eq_results
        return index

    @property
    def equality_key_rows(self) -> int:
        """Equality delete keys held in memory."""
        return sum(e.keys.num_rows for e in self.equality)

    def position_deletes_for(self, data: FileRef) -> Positions:
        """Sorted unique positions deleted from ``data`` by applicable position delete files."""
        arrays = [
            self.positions[ref.path][data.path]
            for ref in self.pos_refs
            if data.path in self.positions[ref.path] and delete_applies(ref, data)
        ]
        return _union(arrays)

    def equality_deletes_for(self, data: FileRef) -> list[_EqualityDeletes]:
        """The equality delete files that apply to ``data``."""
        return [e for e in self.equality if delete_applies(e.ref, data)]

    def deleted_positions(self, data: FileRef) -> Positions:
        """Sorted unique positions of ``data`` deleted by any applicable delete (position or equality).

        Equality deletes are resolved by reading only the key columns of ``data`` (unless
        :meth:`resolve_equality` already did it for a batch of files).

        Raises:
            InputFileError: the data file is missing, unreadable, or has another row count than planned.
        """
        if data.path not in self.equality_positions and self.equality_deletes_for(data):
            self.resolve_equality([data])
        return _union([self.position_deletes_for(data), self.equality_positions.get(data.path, _EMPTY)])

    def resolve_equality(self, data_files: Sequence[FileRef], *, max_rows: int = 4_000_000) -> None:
        """Turn the equality deletes of many data files into positions with one hash join per batch.

        The key columns of up to ``max_rows`` data-file rows are joined at once with the delete keys
        (reduced to the highest delete sequence number per key and partition scope), then filtered
        by the sequence-number and partition rules. Each delete key is hashed once per batch of
        files instead of once per file: this is what keeps CDC tables (many small data files, many
        equality delete files) fast.

        Raises:
            InputFileError: a data file is missing, unreadable, or has another row count than planned.
        """
        todo = [
            d for d in data_files if d.path not in self.equality_positions and self.equality_deletes_for(d)
        ]
        chunk: list[FileRef] = []
        rows = 0
        for data in todo:
            chunk.append(data)
            rows += data.record_count
            if rows >= max_rows:
                self._resolve_chunk(chunk)
                chunk, rows = [], 0
        if chunk:
            self._resolve_chunk(chunk)

    def _resolve_chunk(self, files: Sequence[FileRef]) -> None:
        scopes: dict[str, int] = {}

        def scope_of(ref: FileRef) -> int:
            if ref.content != "data" and not ref.partition:
                return _GLOBAL_SCOPE  # an unpartitioned delete applies to every partition
            return scopes.setdefault(json.dumps([ref.spec_id, ref.partition]), len(scopes))

        groups: dict[tuple[str, ...], list[_EqualityDeletes]] = {}
        for eq in self.equality:
            if any(delete_applies(eq.ref, d) for d in files):
                groups.setdefault(eq.names, []).append(eq)
        key_columns = sorted({n for names in groups for n in names})
        projections: dict[str, _Projection] = {}
        for data in files:
            scope_of(data)  # assign scope ids on this thread

        def read_keys(item: tuple[int, FileRef]) -> pa.Table | None:
            i, data = item
            keys = _read_columns_with_positions(
                self.table, data, self.schema, key_columns, use_threads=False, projections=projections
            )
            n = keys.num_rows
            if n == 0:
                return None
            return (
                _plain_table(keys)
                .append_column(_FILE, pa.array(np.full(n, i, dtype=np.int32)))
                .append_column(_DSEQ, pa.array(np.full(n, data.data_sequence_number, dtype=np.int64)))
                .append_column(_SCOPE, pa.array(np.full(n, scope_of(data), dtype=np.int32)))
            )

        # the key columns of many (often small) files are read on a few threads at once
        with ThreadPoolExecutor(max_workers=PREFETCH_THREADS) as pool:
            parts = [p for p in pool.map(read_keys, enumerate(files)) if p is not None]
        found: list[tuple[npt.NDArray[np.int32], Positions]] = []
        file_keys = pa.concat_tables(parts) if parts else None
        for names, eqs in groups.items():
            if file_keys is not None:
                found.append(_equality_matches(file_keys, names, eqs, scope_of))
        codes = np.concatenate([f for f, _ in found]) if found else np.empty(0, np.int32)
        positions = np.concatenate([p for _, p in found]) if found else _EMPTY
        order = np.argsort(codes, kind="stable")
        bounds = np.cumsum(np.bincount(codes, minlength=len(files)))
        start = 0
        for i, data in enumerate(files):
            end = int(bounds[i])
            self.equality_positions[data.path] = np.unique(positions[order[start:end]])
            start = end


def _equality_matches(
    file_keys: pa.Table,
    names: Sequence[str],
    eqs: Sequence[_EqualityDeletes],
    scope_of: Callable[[FileRef], int],
) -> tuple[npt.NDArray[np.int32], Positions]:
    """``(file index, position)`` of the rows of ``file_keys`` deleted by the equality deletes ``eqs``."""
    types = {n: file_keys.schema.field(n).type for n in names}
    deletes = pa.concat_tables(
        [
            pa.table(
                {
                    **{n: e.keys.column(n).cast(types[n]) for n in names},
                    _ESEQ: pa.array(np.full(e.keys.num_rows, e.ref.data_sequence_number, dtype=np.int64)),
                    _ESCOPE: pa.array(np.full(e.keys.num_rows, scope_of(e.ref), dtype=np.int32)),
                }
            )
            for e in eqs
        ]
    )
    right, join_keys = _null_safe_keys(deletes, names)
    # one row per key and scope, carrying the newest delete's sequence number
    newest = right.group_by([*join_keys, _ESCOPE]).aggregate([(_ESEQ, "max")])
    right = pa.table(
        {**{k: newest.column(k) for k in [*join_keys, _ESCOPE]}, _ESEQ: newest.column(f"{_ESEQ}_max")}
    )
    left, _ = _null_safe_keys(file_keys.select([*names, _FILE, _POS, _DSEQ, _SCOPE]), names)
    joined = left.join(right, keys=join_keys, join_type="inner", use_threads=True)
    keep = pc.and_(
        pc.less(joined.column(_DSEQ), joined.column(_ESEQ)),
        pc.or_(
            pc.equal(joined.column(_SCOPE), joined.column(_ESCOPE)),
            pc.equal(joined.column(_ESCOPE), _GLOBAL_SCOPE),
        ),
    )
    hits = joined.select([_FILE, _POS]).filter(keep)
    return (
        hits.column(_FILE).to_numpy().astype(np.int32, copy=False),
        hits.column(_POS).to_numpy().astype(np.int64, copy=False),
    )


def _union(arrays: Sequence[Positions]) -> Positions:
    arrays = [a for a in arrays if len(a)]
    if not arrays:
        return np.empty(0, dtype=np.int64)
    if len(arrays) == 1:
        return arrays[0]
    return np.unique(np.concatenate(arrays))  # sorts: the inputs come from several delete files


def _open_stream(table: Table, path: str) -> Any:
    try:
        return table.io.new_input(path).open()
    except (FileNotFoundError, OSError) as exc:
        raise InputFileError(path, f"{type(exc).__name__}: {exc}") from exc


def _open_parquet(table: Table, path: str) -> tuple[Any, pq.ParquetFile]:
    """Open a data file and read its footer (the cheapest per-file reader for many small files)."""
    stream = _open_stream(table, path)
    try:
        return stream, pq.ParquetFile(stream, pre_buffer=True)
    except (pa.ArrowException, OSError) as exc:
        stream.close()
        raise InputFileError(path, f"not a readable Parquet file ({exc})") from exc


def _open_fragment(
    table: Table, path: str, dictionary_columns: tuple[str, ...] = ()
) -> tuple[Any, ds.Fragment]:
    """Open a Parquet file as a dataset fragment; ``dictionary_columns`` are read dictionary-encoded."""
    stream = _open_stream(table, path)
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


def _read_position_deletes(table: Table, ref: FileRef, paths: set[str]) -> dict[str, Positions]:
    # ``file_path`` repeats one value per deleted row: read it dictionary-encoded (a few distinct
    # strings and int32 codes instead of millions of decoded strings).
    stream, fragment = _open_fragment(table, ref.path, dictionary_columns=("file_path",))
    with stream:
        try:
            data = fragment.to_table(
                columns=["file_path", "pos"], filter=pc.field("file_path").isin(sorted(paths))
            )
        except pa.ArrowException as exc:
            raise InputFileError(ref.path, f"not a position delete file ({exc})") from exc
    if data.num_rows == 0:
        return {}
    # vectorised split by path (read as a dictionary): one dictionary for all chunks, stable-sort
    # the row indices by code
    encoded = data.unify_dictionaries().column("file_path").combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    positions = data.column("pos").to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(encoded.dictionary)))
    result: dict[str, Positions] = {}
    start = 0
    for code, path in enumerate(encoded.dictionary.to_pylist()):
        end = int(bounds[code])
        if end > start:  # a unified dictionary may hold paths the filter dropped
            result[path] = _sorted_unique(positions[order[start:end]])
        start = end
    return result


def _sorted_unique(values: npt.NDArray[Any]) -> Positions:
    """``values`` as sorted unique int64 (cheap when already sorted, as position deletes should be)."""
    values = values.astype(np.int64, copy=False)
    if len(values) < 2 or bool(np.all(values[1:] > values[:-1])):
        return values
    return np.unique(values)


def _file_schema(table: Table, physical: pa.Schema) -> Schema:
    return pyarrow_to_schema(
        physical,
        name_mapping=table.metadata.name_mapping(),
        downcast_ns_timestamp_to_us=True,
        format_version=table.metadata.format_version,
    )


def _read_equality_deletes(table: Table, ref: FileRef, schema: Schema) -> _EqualityDeletes:
    if not ref.equality_ids:
        raise InputFileError(ref.path, "equality delete file without equality_ids")
    missing = [i for i in ref.equality_ids if i not in schema.field_ids]
    if missing:
        raise InputFileError(ref.path, f"equality field ids {missing} are not in the read schema")
    key_schema = prune_columns(schema, set(ref.equality_ids), select_full_types=False)
    stream, fragment = _open_fragment(table, ref.path)
    with stream:
        try:
            file_schema = _file_schema(table, fragment.physical_schema)
            file_project = prune_columns(file_schema, set(ref.equality_ids), select_full_types=False)
            data = fragment.to_table(columns=[c.name for c in file_project.columns])
        except (pa.ArrowException, ValueError) as exc:
            raise InputFileError(ref.path, f"cannot read equality keys ({exc})") from exc
    target = output_arrow_schema(key_schema)
    batches = [
        to_requested_schema(key_schema, file_project, b, allow_timestamp_tz_mismatch=True)
        for b in data.to_batches()
    ]
    keys = pa.Table.from_batches([b.cast(target) for b in batches], schema=target)
    names = tuple(schema.find_column_name(i) or "" for i in ref.equality_ids)
    keys = _plain_table(keys.select(list(names)))
    if len(names) > 1 or keys.num_rows > 1:
        keys = keys.group_by(list(names)).aggregate([])  # distinct keys
    return _EqualityDeletes(ref=ref, names=names, keys=keys)


def _null_fill(values: pa.ChunkedArray | pa.Array) -> pa.Scalar:
    """A non-null scalar of ``values``' type, used to stand in for NULL in join keys."""
    typ = values.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
        return pa.scalar("", typ)
    if pa.types.is_fixed_size_binary(typ):
        return pa.scalar(b"\0" * typ.byte_width, typ)
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ) or pa.types.is_binary_view(typ):
        return pa.scalar(b"", typ)
    if pa.types.is_boolean(typ):
        return pa.scalar(False, typ)
    if pa.types.is_date32(typ):
        return pa.scalar(0, pa.int32()).cast(typ)
    if pa.types.is_decimal(typ):
        return pa.scalar(Decimal(0), typ)
    return pa.scalar(0, pa.int64()).cast(typ)


def _null_safe_keys(data: pa.Table, names: Sequence[str]) -> tuple[pa.Table, list[str]]:
    """Replace each key column by (filled value, is-null flag) so a hash join matches NULL with NULL."""
    columns: dict[str, Any] = {}
    keys: list[str] = []
    for i, name in enumerate(names):
        col = data.column(name)
        value, flag = f"__k{i}", f"__n{i}"
        columns[value] = pc.fill_null(col, _null_fill(col))
        columns[flag] = pc.is_null(col)
        keys += [value, flag]
    for extra in data.column_names:
        if extra not in names:
            columns[extra] = data.column(extra)
    return pa.table(columns), keys


def _plain(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """``values`` without an extension type (e.g. ``arrow.uuid``), which hash kernels do not support."""
    if isinstance(values.type, pa.BaseExtensionType):
        return pa.chunked_array([c.storage for c in values.chunks], type=values.type.storage_type)
    return values


def _plain_table(data: pa.Table) -> pa.Table:
    return pa.table({n: _plain(data.column(n)) for n in data.column_names})


_SAME_STORAGE = {
    (pa.string(), pa.large_string()),
    (pa.large_string(), pa.string()),
    (pa.binary(), pa.large_binary()),
    (pa.large_binary(), pa.binary()),
}


def _same_storage(scanned: pa.DataType, wanted: pa.DataType) -> bool:
    return scanned == wanted or (scanned, wanted) in _SAME_STORAGE


@dataclass
class _Projection:
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
    def build(cls, requested: Schema, file_schema: Schema, physical: pa.Schema) -> _Projection:
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


def _projection_for(
    table: Table, path: str, physical: pa.Schema, requested: Schema, cache: dict[str, _Projection]
) -> _Projection:
    """The projection of a physical schema to ``requested``, cached by schema (with field ids)."""
    key = _schema_key(physical)
    projection = cache.get(key)
    if projection is None:
        try:
            file_schema = _file_schema(table, physical)
        except ValueError as exc:
            raise InputFileError(path, f"no Iceberg field ids ({exc})") from exc
        projection = _Projection.build(requested, file_schema, physical)
        cache[key] = projection
    return projection


@dataclass
class _FileReader:
    """Reads one data file as record batches projected to the read schema (no deletes applied)."""

    table: Table
    data: FileRef
    schema: Schema
    columns: Sequence[str] | None = None
    projections: dict[str, _Projection] | None = None

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
        stream, parquet = _open_parquet(self.table, self.data.path)
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

    def _projection(self, physical: pa.Schema, requested: Schema) -> _Projection:
        """The projection of this file's physical schema, shared by files with the same schema."""
        cache = self.projections if self.projections is not None else {}
        return _projection_for(self.table, self.data.path, physical, requested, cache)

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


def _read_columns_with_positions(
    table: Table,
    data: FileRef,
    schema: Schema,
    columns: Sequence[str],
    *,
    use_threads: bool = True,
    projections: dict[str, _Projection] | None = None,
) -> pa.Table:
    reader = _FileReader(table, data, schema, columns, projections=projections)
    parts = []
    for start, batch in reader.batches(DEFAULT_BATCH_ROWS * 4, use_threads):
        pos = pa.array(np.arange(start, start + batch.num_rows, dtype=np.int64))
        parts.append(pa.Table.from_batches([batch]).append_column(_POS, pos))
    if not parts:
        return pa.table({c: pa.array([], pa.null()) for c in columns} | {_POS: pa.array([], pa.int64())})
    return pa.concat_tables(parts)


def apply_positions(batch: pa.RecordBatch, start: int, deleted: Positions) -> pa.RecordBatch:
    """Drop the rows of ``batch`` (whose first row is file position ``start``) listed in ``deleted``."""
    if len(deleted) == 0:
        return batch
    end = start + batch.num_rows
    lo, hi = np.searchsorted(deleted, [start, end])
    if lo == hi:
        return batch
    mask = np.ones(batch.num_rows, dtype=bool)
    mask[deleted[lo:hi] - start] = False
    return batch.filter(pa.array(mask))


def read_data_file_batches(
    table: Table,
    data: FileRef,
    deletes: DeleteIndex | None = None,
    *,
    schema: Schema | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    projections: dict[str, _Projection] | None = None,
    use_threads: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Stream one data file's live rows (deletes from ``deletes`` applied), in the read schema.

    Args:
        table: the table.
        data: the data file.
        deletes: the task's delete index (None: no deletes).
        schema: the read schema (default: ``deletes.schema`` or the table's current schema).
        batch_size: rows per batch read.
        projections: a cache of schema projections shared by the files of one read (one schema).
        use_threads: decode the file's columns in parallel.

    Raises:
        InputFileError: missing, unreadable or short data file.
    """
    schema = schema or (deletes.schema if deletes is not None else table.schema())
    deleted = deletes.deleted_positions(data) if deletes is not None else np.empty(0, dtype=np.int64)
    if data.record_count > 0 and np.count_nonzero(deleted < data.record_count) == data.record_count:
        # Every row is deleted: still verify the file exists, without decoding it.
        stream, _ = _open_parquet(table, data.path)
        stream.close()
        return
    reader = _FileReader(table, data, schema, projections=projections)
    for start, batch in reader.batches(batch_size, use_threads):
        live = apply_positions(batch, start, deleted)
        if live.num_rows:
            yield live


def read_task_batches(
    table: Table,
    data_files: Sequence[FileRef],
    delete_files: Sequence[FileRef] = (),
    *,
    schema: Schema | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    deletes: DeleteIndex | None = None,
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
        deletes: an already loaded :class:`DeleteIndex` (then ``delete_files`` is ignored).

    Yields:
        Non-empty record batches.

    Raises:
        InputFileError: a data or delete file is missing or unreadable.
    """
    schema = schema or table.schema()
    index = (
        deletes if deletes is not None else DeleteIndex.load(table, data_files, delete_files, schema=schema)
    )
    index.resolve_equality(data_files)
    projections: dict[str, _Projection] = {}
    for segment in _segments(table, data_files, index, schema, projections):
        if isinstance(segment, _ScanRun):
            yield from segment.batches(batch_size)
        else:
            yield from _read_files(table, segment, index, schema, batch_size, projections)


def _read_files(
    table: Table,
    data_files: Sequence[FileRef],
    index: DeleteIndex,
    schema: Schema,
    batch_size: int,
    projections: dict[str, _Projection],
) -> Iterator[pa.RecordBatch]:
    """The per-file path: each file opened, deletes applied, projected on its own."""

    def read_whole(data: FileRef) -> list[pa.RecordBatch]:
        return list(
            read_data_file_batches(
                table, data, index, schema=schema, batch_size=batch_size, projections=projections
            )
        )

    # Small files are read ahead by a few threads (each file on one thread, several files at once,
    # at most PREFETCH_BYTES of them in flight); large files stream on this thread with pyarrow's
    # own parallel column decoding. Batches come out in data_files order either way.
    pool = ThreadPoolExecutor(max_workers=PREFETCH_THREADS) if len(data_files) > 1 else None
    queue: deque[tuple[FileRef, Future[list[pa.RecordBatch]] | None]] = deque()
    upcoming = iter(data_files)
    in_flight = 0

    def fill() -> None:
        nonlocal in_flight
        while len(queue) < PREFETCH_FILES and in_flight < PREFETCH_BYTES:
            data = next(upcoming, None)
            if data is None:
                return
            if pool is not None and data.size_bytes <= PREFETCH_FILE_BYTES:
                queue.append((data, pool.submit(read_whole, data)))
                in_flight += data.size_bytes
            else:
                queue.append((data, None))
                return  # a large file next: stream it before reading further ahead

    try:
        fill()
        while queue:
            data, future = queue.popleft()
            if future is None:
                fill()
                yield from read_data_file_batches(
                    table, data, index, schema=schema, batch_size=batch_size, projections=projections
                )
            else:
                batches = future.result()
                in_flight -= data.size_bytes
                fill()
                yield from batches
            fill()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _ScanRun:
    """Consecutive delete-free data files with one physical schema that needs no projection work.

    They are read by threaded multi-file ``pyarrow.dataset`` scans of a few files each, on a
    producer thread at most 32 MB of rows ahead of the writer (the fast path, :func:`_bounded_scan`): their
    footers were already read (and verified against the plan's record counts), and the fragments
    keep them, so the scans do not read them again.
    """

    files: list[FileRef]
    fragments: list[ds.Fragment]
    filesystem: pafs.FileSystem
    projection: _Projection

    def batches(self, batch_size: int) -> Iterator[pa.RecordBatch]:
        """Yield the rows of every file, in file order, in the requested schema.

        Raises:
            InputFileError: a file is corrupt, or the files hold another number of rows than planned.
        """
        # The dataset schema is the requested Arrow schema itself: the projection is direct (same
        # names and order), so the scan's own threads relabel and widen string offsets.
        target = self.projection.target
        expected = sum(d.record_count for d in self.files)
        rows = 0
        try:
            for batch in _bounded_scan(self._groups(), target, self.filesystem, batch_size):
                if batch.num_rows:
                    rows += batch.num_rows
                    yield batch if batch.schema.equals(target) else self.projection.apply(batch, {})
        except (pa.ArrowException, OSError) as exc:
            raise InputFileError(self._culprit(str(exc)), f"corrupt Parquet data ({exc})") from exc
        if rows != expected:  # the footers matched the plan: only a file changed meanwhile gets here
            raise InputFileError(
                self.files[0].path
                if len(self.files) == 1
                else f"{self.files[0].path} (+{len(self.files) - 1})",
                f"the files hold {rows} rows, the plan expected {expected}",
            )

    def _groups(self) -> list[list[ds.Fragment]]:
        """The fragments in consecutive groups of about :data:`SCAN_GROUP_BYTES` (at least one file)."""
        groups: list[list[ds.Fragment]] = []
        size = 0
        for data, fragment in zip(self.files, self.fragments, strict=True):
            if not groups or size + data.size_bytes > SCAN_GROUP_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(fragment)
            size += data.size_bytes
        return groups

    def _culprit(self, message: str) -> str:
        """The file the scan failed on: named in ``message``, else found by reading each file again
        (only on this error path)."""
        for data, fragment in zip(self.files, self.fragments, strict=True):
            if fragment.path in message:
                return data.path
        for data, fragment in zip(self.files, self.fragments, strict=True):
            try:
                for _ in fragment.to_batches(columns=self.projection.target.names, use_threads=False):
                    pass
            except (pa.ArrowException, OSError):
                return data.path
        return f"one of {len(self.files)} files starting with {self.files[0].path}"


def _bounded_scan(
    groups: list[list[ds.Fragment]], schema: pa.Schema, filesystem: pafs.FileSystem, batch_size: int
) -> Iterator[pa.RecordBatch]:
    """The batches of every group's threaded dataset scan, in order, read on a producer thread at
    most :data:`SCAN_AHEAD_BYTES` of decoded rows ahead of the consumer.

    A dataset scan over many files decodes ahead of a slow consumer without bound (its
    ``fragment_readahead``/``batch_readahead`` do not cap it: 250 MB in flight for 25 files of 5 MB
    behind a Parquet encoder), so each scan covers one small group of files and the producer
    waits for the consumer before it reads further. Errors of the scan are raised in the
    consumer; closing the consumer stops the producer.
    """
    import threading

    ready: deque[pa.RecordBatch] = deque()
    held = [0]  # bytes of the batches in ``ready``
    state: dict[str, Any] = {"done": False, "error": None, "stop": False}
    cond = threading.Condition()

    def produce() -> None:
        try:
            fmt = _fast_format()
            for fragments in groups:
                dataset = ds.FileSystemDataset(fragments, schema=schema, format=fmt, filesystem=filesystem)
                for batch in dataset.to_batches(
                    columns=schema.names, batch_size=batch_size, use_threads=True
                ):
                    with cond:
                        while ready and held[0] + batch.nbytes > SCAN_AHEAD_BYTES and not state["stop"]:
                            cond.wait()
                        if state["stop"]:
                            return
                        ready.append(batch)
                        held[0] += batch.nbytes
                        cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            with cond:
                state["error"] = exc
        finally:
            with cond:
                state["done"] = True
                cond.notify_all()

    producer = threading.Thread(target=produce, name="amoro-scan-ahead", daemon=True)
    producer.start()
    try:
        while True:
            with cond:
                while not ready and not state["done"]:
                    cond.wait()
                if ready:
                    batch = ready.popleft()
                    held[0] -= batch.nbytes
                    cond.notify_all()
                elif state["error"] is not None:
                    raise state["error"]
                else:
                    return
            yield batch
    finally:
        with cond:
            state["stop"] = True
            cond.notify_all()
        producer.join()


def _fast_format() -> ds.ParquetFileFormat:
    return ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))


def _dataset_paths(table: Table, data_files: Sequence[FileRef]) -> tuple[pafs.FileSystem, list[str]] | None:
    """The pyarrow filesystem and its paths for ``data_files`` (None: not all on one pyarrow FS)."""
    io = table.io
    if not isinstance(io, PyArrowFileIO):
        return None
    filesystem: pafs.FileSystem | None = None
    paths = []
    for data in data_files:
        scheme, netloc, path = PyArrowFileIO.parse_location(data.path, io.properties)
        fs = io.fs_by_scheme(scheme, netloc)
        if filesystem is None:
            filesystem = fs
        elif fs is not filesystem:
            return None
        paths.append(path)
    return (filesystem, paths) if filesystem is not None else None


def _footer(fmt: ds.ParquetFileFormat, filesystem: pafs.FileSystem, path: str, data: FileRef) -> ds.Fragment:
    """A fragment of ``data`` with its footer read (kept by the fragment) and its row count checked."""
    try:
        fragment = fmt.make_fragment(path, filesystem=filesystem)
        rows = fragment.metadata.num_rows  # reads the footer: fails here for a missing or corrupt file
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(data.path, f"not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    if rows != data.record_count:
        raise InputFileError(data.path, f"has {rows} rows, the plan expected {data.record_count}")
    return fragment


def _footers(
    fmt: ds.ParquetFileFormat, filesystem: pafs.FileSystem, items: Sequence[tuple[str, FileRef]]
) -> list[ds.Fragment]:
    return [_footer(fmt, filesystem, path, data) for path, data in items]


def _segments(
    table: Table,
    data_files: Sequence[FileRef],
    index: DeleteIndex,
    schema: Schema,
    projections: dict[str, _Projection],
) -> Iterator[_ScanRun | list[FileRef]]:
    """``data_files`` cut, in order, into fast-path scan runs and lists for the per-file path.

    A file takes the fast path when no delete removes any of its rows and its physical schema maps
    to ``schema`` directly by field id (same columns, order and types: the usual case); files with
    deletes or evolved schemas keep the per-file path. Files go in windows (32 files, doubling up
    to :data:`MAX_WINDOW`): the footers of the next window are read on a thread pool while the
    current window is scanned, so footer reads overlap the scan as in a plain dataset scan.
    """
    clean = [len(index.deleted_positions(d)) == 0 for d in data_files]
    source = _dataset_paths(table, data_files) if any(clean) else None
    if source is None:
        if data_files:
            yield list(data_files)
        return
    filesystem, paths = source
    fmt = _fast_format()
    windows: list[range] = []
    start, size = 0, FIRST_WINDOW
    while start < len(data_files):
        windows.append(range(start, min(start + size, len(data_files))))
        start, size = start + size, min(size * 2, MAX_WINDOW)
    pool = ThreadPoolExecutor(max_workers=FOOTER_THREADS)

    def submit(window: range) -> list[tuple[list[int], Future[list[ds.Fragment]]]]:
        picked = [i for i in window if clean[i]]
        chunks = [picked[k : k + FOOTER_CHUNK] for k in range(0, len(picked), FOOTER_CHUNK)]
        return [
            (chunk, pool.submit(_footers, fmt, filesystem, [(paths[i], data_files[i]) for i in chunk]))
            for chunk in chunks
        ]

    ahead = deque(submit(w) for w in windows[:2])
    try:
        for k, window in enumerate(windows):
            fragments: dict[int, ds.Fragment] = {}
            for chunk, future in ahead.popleft():
                fragments.update(zip(chunk, future.result(), strict=True))
            if k + 2 < len(windows):
                ahead.append(submit(windows[k + 2]))
            yield from _window_segments(
                table,
                [data_files[i] for i in window],
                [fragments.get(i) for i in window],
                filesystem,
                schema,
                projections,
            )
    finally:
        for futures in ahead:
            for _, future in futures:
                future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _window_segments(
    table: Table,
    data_files: Sequence[FileRef],
    fragments: Sequence[ds.Fragment | None],
    filesystem: pafs.FileSystem,
    schema: Schema,
    projections: dict[str, _Projection],
) -> Iterator[_ScanRun | list[FileRef]]:
    """Runs of consecutive files (with footers read) that one scan reads; lists of the others."""
    run: _ScanRun | None = None
    run_physical: pa.Schema | None = None
    slow: list[FileRef] = []
    for data, fragment in zip(data_files, fragments, strict=True):
        projection = None
        if fragment is not None:
            physical = fragment.physical_schema
            if run is not None and physical.equals(run_physical, check_metadata=True):
                projection = run.projection  # the usual case: the schema of the previous file
            else:
                projection = _projection_for(table, data.path, physical, schema, projections)
                run_physical = physical
            if not (projection.direct and projection.columns):
                projection = None
        if projection is None or fragment is None:
            if run is not None:
                yield run
                run = None
            slow.append(data)
            continue
        if slow:
            yield slow
            slow = []
        if run is not None and run.projection is projection:
            run.files.append(data)
            run.fragments.append(fragment)
            continue
        if run is not None:
            yield run
        run = _ScanRun([data], [fragment], filesystem, projection)
    if run is not None:
        yield run
    if slow:
        yield slow
