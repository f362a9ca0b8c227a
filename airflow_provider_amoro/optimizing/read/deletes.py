"""Loading a task's delete files once, and answering which rows of a data file are deleted.

:meth:`TaskDeletes.load` reads every delete file of the task that applies to one of its data files
(in parallel threads): position deletes as ``{data file path: positions}`` for the task's data
files only (``file_path`` read dictionary-encoded); equality deletes as Arrow tables of their
distinct keys, projected by field id to the read schema. This is the only part of a task held in
memory whole, as in every Iceberg engine. :meth:`TaskDeletes.deleted_positions` turns every
delete that applies to a data file (``model.delete_applies``) into row positions, equality deletes
through the join of :mod:`.equality`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.schema import Schema, prune_columns

from airflow_provider_amoro.iceberg_compat import to_requested_schema
from airflow_provider_amoro.optimizing.model import FileRef, delete_applies
from airflow_provider_amoro.optimizing.read.equality import (
    EqualityDeleteKeys,
    equality_positions,
    plain_table,
)
from airflow_provider_amoro.optimizing.read.files import InputFileError, iceberg_schema_of, open_fragment
from airflow_provider_amoro.optimizing.read.projection import (
    EMPTY_POSITIONS,
    Positions,
    output_arrow_schema,
)

if TYPE_CHECKING:
    from pyiceberg.table import Table


@dataclass
class TaskDeletes:
    """The deletes of one task, loaded once; answers "which rows of this data file are deleted".

    Attributes:
        positions: per position delete file (by path): ``{data file path: sorted positions}``.
        equality: the equality delete files with their keys (columns named as in the read schema).
    """

    table: Table
    schema: Schema
    pos_refs: list[FileRef] = field(default_factory=list)
    positions: dict[str, dict[str, Positions]] = field(default_factory=dict)
    equality: list[EqualityDeleteKeys] = field(default_factory=list)
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
    ) -> TaskDeletes:
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
            return read_position_deletes(table, ref, paths)

        def read_eq(ref: FileRef) -> EqualityDeleteKeys:
            return read_equality_deletes(table, ref, schema)

        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            pos_results = list(pool.map(read_pos, pos_refs))
            eq_results = list(pool.map(read_eq, eq_refs))
        index.pos_refs = pos_refs
        index.positions = {ref.path: res for ref, res in zip(pos_refs, pos_results, strict=True)}
        index.equality = eq_results
        return index

    @property
    def has_deletes(self) -> bool:
        """Whether any delete file applies to the task's data files."""
        return bool(self.pos_refs or self.equality or self.equality_positions)

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

    def equality_deletes_for(self, data: FileRef) -> list[EqualityDeleteKeys]:
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
        return _union(
            [self.position_deletes_for(data), self.equality_positions.get(data.path, EMPTY_POSITIONS)]
        )

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
        if not self.equality:
            return
        todo = [
            d for d in data_files if d.path not in self.equality_positions and self.equality_deletes_for(d)
        ]
        chunk: list[FileRef] = []
        rows = 0
        for data in todo:
            chunk.append(data)
            rows += data.record_count
            if rows >= max_rows:
                self.equality_positions.update(
                    equality_positions(self.table, self.schema, self.equality, chunk)
                )
                chunk, rows = [], 0
        if chunk:
            self.equality_positions.update(equality_positions(self.table, self.schema, self.equality, chunk))


def _union(arrays: Sequence[Positions]) -> Positions:
    arrays = [a for a in arrays if len(a)]
    if not arrays:
        return np.empty(0, dtype=np.int64)
    if len(arrays) == 1:
        return arrays[0]
    return np.unique(np.concatenate(arrays))  # sorts: the inputs come from several delete files


def read_position_deletes(table: Table, ref: FileRef, paths: set[str]) -> dict[str, Positions]:
    # ``file_path`` repeats one value per deleted row: read it dictionary-encoded (a few distinct
    # strings and int32 codes instead of millions of decoded strings).
    stream, fragment = open_fragment(table, ref.path, dictionary_columns=("file_path",))
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


def read_equality_deletes(table: Table, ref: FileRef, schema: Schema) -> EqualityDeleteKeys:
    if not ref.equality_ids:
        raise InputFileError(ref.path, "equality delete file without equality_ids")
    missing = [i for i in ref.equality_ids if i not in schema.field_ids]
    if missing:
        raise InputFileError(ref.path, f"equality field ids {missing} are not in the read schema")
    key_schema = prune_columns(schema, set(ref.equality_ids), select_full_types=False)
    stream, fragment = open_fragment(table, ref.path)
    with stream:
        try:
            file_schema = iceberg_schema_of(table, fragment.physical_schema)
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
    keys = plain_table(keys.select(list(names)))
    if len(names) > 1 or keys.num_rows > 1:
        keys = keys.group_by(list(names)).aggregate([])  # distinct keys
    return EqualityDeleteKeys(ref=ref, names=names, keys=keys)


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
