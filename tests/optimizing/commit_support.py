"""Helpers for commit tests: hand-built plans and a tiny reference rewriter (no engine code).

The rewriter reads the input Parquet files with pyarrow, drops rows by a caller-given id set (the
caller knows which rows its deletes hide) and writes new files with pyiceberg's writer, so the
commit can be tested before and independently of the engine's planner and executor.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from airflow_provider_amoro.optimizing.commit import HeadState
from airflow_provider_amoro.optimizing.model import (
    FileRef,
    OptimizingPlan,
    RewriteTask,
    TaskResult,
    datafile_to_dict,
)
from airflow_provider_amoro.testing.reader import content_hash, read_table


def live(table: Table, content: str | None = "data") -> list[FileRef]:
    """Live files of the current snapshot as FileRefs, ordered by path."""
    table.refresh()
    return sorted(HeadState.load(table.metadata, table.io).refs(content), key=lambda r: r.path)


def ref_of_path(table: Table, path: str) -> FileRef:
    """The live FileRef of one path."""
    return next(r for r in live(table, None) if r.path == path)


def hand_plan(
    table: Table,
    tasks: Sequence[dict[str, Any]],
    kind: str = "minor",
    properties: dict[str, str] | None = None,
) -> OptimizingPlan:
    """A plan on the table's current snapshot; each task dict holds FileRef lists by RewriteTask field."""
    table.refresh()
    snap = table.current_snapshot()
    assert snap is not None, "hand_plan needs a table with a snapshot"
    built = []
    for i, t in enumerate(tasks):
        files = [*t.get("rewrite_data_files", []), *t.get("rewrite_pos_data_files", [])]
        built.append(
            RewriteTask(
                task_id=i,
                kind=kind,  # type: ignore[arg-type]
                spec_id=files[0].spec_id,
                partition=files[0].partition,
                partition_path="",
                rewrite_data_files=list(t.get("rewrite_data_files", [])),
                rewrite_pos_data_files=list(t.get("rewrite_pos_data_files", [])),
                delete_files=list(t.get("delete_files", [])),
            )
        )
    return OptimizingPlan(
        table=".".join(table.name()),
        kind=kind,  # type: ignore[arg-type]
        base_snapshot_id=snap.snapshot_id,
        base_sequence_number=snap.sequence_number,
        created_at_ms=int(time.time() * 1000),
        target_size=128 * 1024 * 1024,
        tasks=built,
        properties=dict(properties or {}),
    )


def read_inputs(table: Table, refs: Sequence[FileRef]) -> pa.Table:
    """Rows of the given data files, deletes NOT applied."""
    parts = []
    for ref in refs:
        with table.io.new_input(ref.path).open() as stream:
            parts.append(pq.read_table(stream))
    return pa.concat_tables(parts, promote_options="default")


def write_outputs(table: Table, data: pa.Table) -> list[DataFile]:
    """Write rows as new data files of the table's current spec (no commit)."""
    files = list(_dataframe_to_data_files(table.metadata, data, table.io, write_uuid=uuid.uuid4()))
    for df in files:
        df.spec_id = table.metadata.default_spec_id
    return files


def hand_rewrite(
    table: Table, task: RewriteTask, drop_ids: Iterable[int] = (), extra_outputs: Sequence[DataFile] = ()
) -> TaskResult:
    """Rewrite a task's data files, dropping rows whose id is in ``drop_ids``."""
    outputs: list[DataFile] = list(extra_outputs)
    out_records = 0
    if task.rewrite_data_files:
        data = read_inputs(table, task.rewrite_data_files)
        drop = pa.array(sorted(set(drop_ids)), pa.int64())
        data = data.filter(pc.invert(pc.is_in(data.column("id"), value_set=drop)))
        data = data.cast(table.schema().as_arrow())
        written = write_outputs(table, data) if data.num_rows else []
        outputs = written + outputs
        out_records = sum(df.record_count for df in written)
    files = [*task.rewrite_data_files, *task.rewrite_pos_data_files, *task.delete_files]
    return TaskResult(
        task_id=task.task_id,
        outputs=[datafile_to_dict(df) for df in outputs],
        input_files=len(files),
        input_bytes=sum(f.size_bytes for f in files),
        input_records=out_records,
        output_records=out_records,
        output_bytes=sum(df.file_size_in_bytes for df in outputs),
    )


def snapshot_of(table: Table) -> tuple[int | None, str]:
    """(current snapshot id, content hash by the independent reader)."""
    table.refresh()
    snap = table.current_snapshot()
    return (snap.snapshot_id if snap else None), content_hash(read_table(table))


def exists(table: Table, path: str) -> bool:
    """Whether a file exists in the table's storage."""
    return bool(table.io.new_input(path).exists())
