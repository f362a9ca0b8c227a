"""Turn an evaluation into an :class:`OptimizingPlan`: bin-packed, JSON-serialisable rewrite tasks.

What each kind rewrites in a partition (Amoro's partition plans):

- **minor**: fragments are rewritten; target-size (and undersized) segments with >= 2 position
  delete files or an equality delete only get their deletes merged into one position delete file
  (``rewrite_pos_data_files``).
- **major**: minor's work, plus every undersized segment (bin-packed together) and every segment
  whose position deletes exceed ``major.trigger.duplicate-ratio``.
- **full**: every data file when ``full.rewrite-all-files=true``; otherwise every file with deletes
  or below minTargetSize.

Without an explicit kind, each partition that needs optimizing is planned with its own kind and the
plan's kind is the highest (full > major > minor). An explicit kind is applied to every partition.

Partitions are taken largest cost first until ``max_input_bytes`` (the optimizer group's input cap)
is reached; the partition that crosses the cap is still taken, as in Amoro, so a partition larger
than the cap is not starved. ``self-optimizing.max-file-count`` caps the input files (data and
delete files) of the process: the tasks that would cross it are left for the next process (the
plan's first task always goes).

Files are bin-packed per partition with best-fit decreasing into tasks of at most
``max(target-size, max-task-size-bytes)`` bytes of data files (a single larger file gets a task of
its own). Rewrite tasks and rewrite-pos tasks are packed separately. A rewrite task holding a single
data file to which no delete applies is dropped: rewriting it alone would change nothing (before
that, such a lone file takes the smallest file of a bin of three or more when it fits). In full
optimizing of a table with a sort order, a lone file not yet sorted by that order is kept: the
rewrite sorts it. Each task
carries every delete file that applies to one of its data files. Task order is deterministic:
partitions by cost (then spec id and path), tasks by size, files by path.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_amoro.optimizing.config import OptimizingConfig
from airflow_provider_amoro.optimizing.evaluate import (
    PartitionEvaluation,
    TableEvaluation,
    evaluate,
    kind_rank,
)
from airflow_provider_amoro.optimizing.model import (
    FileRef,
    OptimizingKind,
    OptimizingPlan,
    RewriteTask,
)
from airflow_provider_amoro.optimizing.scan import DeleteFileIndex

if TYPE_CHECKING:
    from pyiceberg.table import Table


def bin_pack(files: Sequence[FileRef], capacity: int) -> list[list[FileRef]]:
    """Best-fit decreasing bin packing of files by size into bins of at most ``capacity`` bytes.

    A file larger than ``capacity`` gets a bin of its own. Deterministic: files are taken by size
    (largest first), then path; each goes to the bin with the least room that still fits it (the
    oldest such bin on ties). Bins are returned largest first, files in a bin by path.

    Args:
        files: the files to pack.
        capacity: the largest total size of a bin.

    Returns:
        The bins.
    """
    if capacity <= 0:
        raise ValueError(f"capacity must be > 0, got {capacity}")
    bins: list[list[FileRef]] = []
    used: list[int] = []
    # open bins as a sorted list of (room left, bin number); a bin whose room is below the smallest
    # file can never take another one and is left out (files come largest first)
    room: list[tuple[int, int]] = []
    ordered = sorted(files, key=lambda f: (-f.size_bytes, f.path))
    smallest = ordered[-1].size_bytes if ordered else 0
    for f in ordered:
        size = f.size_bytes
        i = bisect.bisect_left(room, (size, -1))
        if size <= capacity and i < len(room):
            left, b = room.pop(i)
            bins[b].append(f)
            used[b] += size
            if left - size >= smallest:
                bisect.insort(room, (left - size, b))
        else:
            bins.append([f])
            used.append(size)
            if capacity - size >= smallest:
                bisect.insort(room, (capacity - size, len(bins) - 1))
    order = sorted(range(len(bins)), key=lambda b: (-used[b], bins[b][0].path))
    return [bins[b] if len(bins[b]) == 1 else sorted(bins[b], key=lambda f: f.path) for b in order]


def select_files(
    p: PartitionEvaluation, kind: OptimizingKind, config: OptimizingConfig, index: DeleteFileIndex
) -> tuple[list[FileRef], list[FileRef]]:
    """The data files a partition rewrites and the ones it only rewrites deletes of, for ``kind``.

    Args:
        p: the partition's evaluation (with its classified files).
        kind: the optimizing kind applied to the partition.
        config: the configuration.
        index: the delete index of the evaluation.

    Returns:
        ``(rewrite_data_files, rewrite_pos_data_files)``.
    """
    files = p.files
    if kind == "full":
        if config.full_rewrite_all_files:
            return list(files.data_files), []
        with_deletes = {f.path for f in files.with_deletes}
        min_target = config.min_target_size
        chosen = [f for f in files.data_files if f.size_bytes <= min_target or f.path in with_deletes]
        return chosen, []
    if kind == "major":
        rewrite = [*files.fragments, *files.undersized]
        seen = {f.path for f in rewrite}
        rewrite += [f for f in files.rewrite_segments if f.path not in seen]
        return rewrite, list(files.rewrite_pos_segments)
    # minor: fragments; segments only get their deletes merged
    rewrite_pos = [*files.rewrite_pos_segments, *files.undersized_rewrite_pos]
    for f in files.rewrite_segments:
        pos_files, _, eq_files = index.summary(f)
        if pos_files >= 2 or eq_files > 0:
            rewrite_pos.append(f)
    return list(files.fragments), rewrite_pos


def _rescue_singletons(bins: list[list[FileRef]], capacity: int, index: DeleteFileIndex | None) -> None:
    """Give a lone file with nothing to fix a partner, so it is not dropped needlessly.

    Best-fit decreasing can leave one undersized file alone in the last bin while smaller files
    sit in bins of three or more; moving the smallest such file next to it keeps every bin within
    ``capacity`` and every donor bin with >= 2 files. Deterministic (bins and files in order).
    """
    donors = [b for b in bins if len(b) >= 3]
    for lone in bins:
        if not donors:
            return
        if len(lone) != 1 or (index is not None and index.for_data_file(lone[0])):
            continue
        room = capacity - lone[0].size_bytes
        for donor in donors:
            smallest = min(donor, key=lambda f: (f.size_bytes, f.path))
            if smallest.size_bytes <= room:
                donor.remove(smallest)
                lone.append(smallest)
                lone.sort(key=lambda f: f.path)
                if len(donor) < 3:
                    donors.remove(donor)
                break


def _partition_tasks(
    p: PartitionEvaluation,
    kind: OptimizingKind,
    config: OptimizingConfig,
    index: DeleteFileIndex,
    sort_order_id: int | None = None,
) -> list[RewriteTask]:
    rewrite, rewrite_pos = select_files(p, kind, config, index)
    capacity = config.max_task_size
    bins = bin_pack(rewrite, capacity)
    has_deletes = len(index) > 0
    _rescue_singletons(bins, capacity, index if has_deletes else None)
    # (files to rewrite, files whose deletes are merged, deletes that apply)
    groups: list[tuple[list[FileRef], list[FileRef], list[FileRef]]] = []
    for group in bins:
        deletes = index.for_data_files(group) if has_deletes else []
        unsorted = kind == "full" and sort_order_id is not None and group[0].sort_order_id != sort_order_id
        if len(group) == 1 and not deletes and not unsorted:
            continue  # a single file with nothing to fix: rewriting it changes nothing
        groups.append((group, [], deletes))
    groups += [([], group, index.for_data_files(group)) for group in bin_pack(rewrite_pos, capacity)]
    return [
        RewriteTask(
            task_id=-1,
            kind=kind,
            spec_id=p.spec_id,
            partition=list(p.partition),
            partition_path=p.path,
            rewrite_data_files=data,
            rewrite_pos_data_files=pos_only,
            delete_files=deletes,
        )
        for data, pos_only, deletes in groups
    ]


def _task_files(task: RewriteTask) -> int:
    """Input files of a task (data, position-delete-only data, delete files)."""
    return len(task.rewrite_data_files) + len(task.rewrite_pos_data_files) + len(task.delete_files)


def plan_evaluation(
    evaluation: TableEvaluation,
    kind: OptimizingKind | str | None = None,
    *,
    table_name: str = "",
    max_input_bytes: int | None = None,
    now_ms: int | None = None,
    max_tasks: int | None = None,
) -> OptimizingPlan:
    """Build the plan for an :class:`TableEvaluation` (the pure core of :func:`plan`).

    Args:
        evaluation: the table's evaluation (from :func:`evaluate` or :func:`evaluate.classify`).
        kind: None: the evaluated kind, each partition with its own kind; else this kind for every
            partition.
        table_name: ``namespace.table`` for the plan.
        max_input_bytes: input cap of the optimizer group (None: no cap).
        now_ms: planning time, epoch ms (default: the evaluation's time).
        max_tasks: at most this many tasks (None: no limit), e.g. Airflow's ``max_map_length`` for
            a mapped execute task. Partitions are taken largest cost first and the last one may be
            cut; what is left is planned by the next process (a delete file is removed only when it
            applies to no live data file, so a partial partition is safe).

    Returns:
        The plan; ``kind`` None and no tasks when there is nothing to do.
    """
    kind = OptimizingKind.parse(kind)
    if max_input_bytes is not None and max_input_bytes <= 0:
        raise ValueError(f"max_input_bytes must be > 0, got {max_input_bytes}")
    if max_tasks is not None and max_tasks <= 0:
        raise ValueError(f"max_tasks must be > 0, got {max_tasks}")
    config = evaluation.config
    index = evaluation.index if evaluation.index is not None else DeleteFileIndex(())
    created = evaluation.evaluated_at_ms if now_ms is None else int(now_ms)
    result = OptimizingPlan(
        table=table_name,
        kind=None,
        base_snapshot_id=evaluation.snapshot_id,
        base_sequence_number=evaluation.sequence_number,
        created_at_ms=created,
        target_size=config.target_size,
        properties=config.to_properties(),
    )
    if kind is None:
        candidates = [(p, p.kind) for p in evaluation.partitions if p.kind is not None]
        if evaluation.kind is None:
            candidates = []
    else:
        candidates = [(p, kind) for p in evaluation.partitions]

    total = 0
    files = 0
    plan_kind: OptimizingKind | None = None
    for p, pkind in candidates:  # partitions are sorted largest cost first
        if max_input_bytes is not None and total >= max_input_bytes:
            break
        if max_tasks is not None and len(result.tasks) >= max_tasks:
            break
        if files >= config.max_file_count:
            break
        assert pkind is not None
        tasks = _partition_tasks(p, pkind, config, index, evaluation.sort_order_id)
        if not tasks:
            continue
        if max_tasks is not None:
            tasks = tasks[: max_tasks - len(result.tasks)]
        kept: list[RewriteTask] = []
        for t in tasks:  # self-optimizing.max-file-count: the rest of the partition waits
            # (the plan's first task always goes, or a task over the cap would never run)
            if files and files + _task_files(t) > config.max_file_count:
                break
            kept.append(t)
            files += _task_files(t)
        tasks = kept
        if not tasks:
            break
        input_bytes = sum(t.input_bytes for t in tasks)
        total += input_bytes
        for t in tasks:
            t.task_id = len(result.tasks)
            t.plan_id = result.plan_id
            result.tasks.append(t)
        if kind_rank(pkind) > kind_rank(plan_kind):
            plan_kind = pkind
        result.partitions.append(
            {
                "spec_id": p.spec_id,
                "partition": list(p.partition),
                "path": p.path,
                "kind": pkind,
                "cost": p.cost,
                "tasks": len(tasks),
                "input_files": sum(len(t.rewrite_data_files) + len(t.rewrite_pos_data_files) for t in tasks),
                "input_bytes": input_bytes,
                "reasons": list(p.reasons) if p.reasons else [f"{p.label}: {pkind} optimizing requested"],
            }
        )
    result.kind = plan_kind
    return result


def plan(
    table: Table,
    kind: OptimizingKind | str | None = None,
    *,
    now: int | None = None,
    last_minor_ms: int | None = None,
    last_major_ms: int | None = None,
    last_full_ms: int | None = None,
    config: OptimizingConfig | None = None,
    max_input_bytes: int | None = None,
    snapshot_id: int | None = None,
    max_tasks: int | None = None,
) -> OptimizingPlan:
    """Plan one optimizing process for a table.

    Args:
        table: the pyiceberg table.
        kind: None: the evaluated kind (nothing to do gives an empty plan); ``minor``, ``major`` or
            ``full``: force that kind on every partition.
        now: planning time, epoch milliseconds (default: the clock).
        last_minor_ms: end of the last minor optimizing, epoch ms; None: never.
        last_major_ms: end of the last major optimizing; None: never.
        last_full_ms: end of the last full optimizing; None: never.
        config: the configuration; default: read from the table's properties.
        max_input_bytes: input cap of the optimizer group (None: no cap).
        snapshot_id: plan on this snapshot instead of the current one.
        max_tasks: at most this many tasks (see :func:`plan_evaluation`).

    Returns:
        The plan, made on ``base_snapshot_id`` (with its sequence number).

    Raises:
        InvalidPropertyError: a ``self-optimizing.*`` property has a bad value.
        ValueError: an unknown kind or a non-positive ``max_input_bytes``.
    """
    kind = OptimizingKind.parse(kind)
    now_ms = int(time.time() * 1000) if now is None else int(now)
    evaluation = evaluate(
        table,
        now=now_ms,
        last_minor_ms=last_minor_ms,
        last_major_ms=last_major_ms,
        last_full_ms=last_full_ms,
        config=config,
        snapshot_id=snapshot_id,
    )
    return plan_evaluation(
        evaluation,
        kind,
        table_name=_table_name(table),
        max_input_bytes=max_input_bytes,
        now_ms=now_ms,
        max_tasks=max_tasks,
    )


def _table_name(table: Table) -> str:
    ident: Any = table.name()
    return ".".join(ident) if isinstance(ident, tuple) else str(ident)
