"""The equality-delete join: which rows of a batch of data files the equality deletes remove.

The key columns of many data files are read at once (threads) and joined with the delete keys,
reduced to the newest delete sequence number per key and partition scope, in one Arrow hash join
(NULL equals NULL, as Iceberg requires); the sequence-number and partition rules filter the
matches. Each delete key is hashed once per batch of files, and no Python loop runs over rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_amoro.optimizing.model import FileRef, delete_applies
from airflow_provider_amoro.optimizing.read.projection import (
    EMPTY_POSITIONS,
    POS_COLUMN,
    Positions,
    Projection,
    read_columns_with_positions,
)

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

KEY_THREADS = 4
"""Threads reading the key columns of data files for the join."""

_FILE = "__amoro_file"
_DSEQ = "__amoro_data_seq"
_SCOPE = "__amoro_scope"
_ESEQ = "__amoro_delete_seq"
_ESCOPE = "__amoro_delete_scope"
_GLOBAL_SCOPE = -1


@dataclass
class EqualityDeleteKeys:
    """The distinct keys of one equality delete file, columns named as in the read schema."""

    ref: FileRef
    names: tuple[str, ...]
    keys: pa.Table


def equality_positions(
    table: Table, schema: Schema, equality: Sequence[EqualityDeleteKeys], files: Sequence[FileRef]
) -> dict[str, Positions]:
    """``{data file path: sorted positions}`` deleted from ``files`` by the ``equality`` deletes.

    Raises:
        InputFileError: a data file is missing, unreadable, or has another row count than planned.
    """
    scopes: dict[str, int] = {}

    def scope_of(ref: FileRef) -> int:
        if ref.content != "data" and not ref.partition:
            return _GLOBAL_SCOPE  # an unpartitioned delete applies to every partition
        return scopes.setdefault(json.dumps([ref.spec_id, ref.partition]), len(scopes))

    groups: dict[tuple[str, ...], list[EqualityDeleteKeys]] = {}
    for eq in equality:
        if any(delete_applies(eq.ref, d) for d in files):
            groups.setdefault(eq.names, []).append(eq)
    key_columns = sorted({n for names in groups for n in names})
    projections: dict[str, Projection] = {}
    for data in files:
        scope_of(data)  # assign scope ids on this thread

    def read_keys(item: tuple[int, FileRef]) -> pa.Table | None:
        i, data = item
        keys = read_columns_with_positions(
            table, data, schema, key_columns, use_threads=False, projections=projections
        )
        n = keys.num_rows
        if n == 0:
            return None
        return (
            plain_table(keys)
            .append_column(_FILE, pa.array(np.full(n, i, dtype=np.int32)))
            .append_column(_DSEQ, pa.array(np.full(n, data.data_sequence_number, dtype=np.int64)))
            .append_column(_SCOPE, pa.array(np.full(n, scope_of(data), dtype=np.int32)))
        )

    # the key columns of many (often small) files are read on a few threads at once
    with ThreadPoolExecutor(max_workers=KEY_THREADS) as pool:
        parts = [p for p in pool.map(read_keys, enumerate(files)) if p is not None]
    found: list[tuple[npt.NDArray[np.int32], Positions]] = []
    file_keys = pa.concat_tables(parts) if parts else None
    for names, eqs in groups.items():
        if file_keys is not None:
            found.append(_equality_matches(file_keys, names, eqs, scope_of))
    codes = np.concatenate([f for f, _ in found]) if found else np.empty(0, np.int32)
    positions = np.concatenate([p for _, p in found]) if found else EMPTY_POSITIONS
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(files)))
    result: dict[str, Positions] = {}
    start = 0
    for i, data in enumerate(files):
        end = int(bounds[i])
        result[data.path] = np.unique(positions[order[start:end]])
        start = end
    return result


def _equality_matches(
    file_keys: pa.Table,
    names: Sequence[str],
    eqs: Sequence[EqualityDeleteKeys],
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
    left, _ = _null_safe_keys(file_keys.select([*names, _FILE, POS_COLUMN, _DSEQ, _SCOPE]), names)
    joined = left.join(right, keys=join_keys, join_type="inner", use_threads=True)
    keep = pc.and_(
        pc.less(joined.column(_DSEQ), joined.column(_ESEQ)),
        pc.or_(
            pc.equal(joined.column(_SCOPE), joined.column(_ESCOPE)),
            pc.equal(joined.column(_ESCOPE), _GLOBAL_SCOPE),
        ),
    )
    hits = joined.select([_FILE, POS_COLUMN]).filter(keep)
    return (
        hits.column(_FILE).to_numpy().astype(np.int32, copy=False),
        hits.column(POS_COLUMN).to_numpy().astype(np.int64, copy=False),
    )


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


def _plain_column(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """``values`` without an extension type (e.g. ``arrow.uuid``), which hash kernels do not support."""
    if isinstance(values.type, pa.BaseExtensionType):
        return pa.chunked_array([c.storage for c in values.chunks], type=values.type.storage_type)
    return values


def plain_table(data: pa.Table) -> pa.Table:
    """``data`` with every extension-typed column as its storage type (hash kernels need plain types)."""
    return pa.table({n: _plain_column(data.column(n)) for n in data.column_names})
