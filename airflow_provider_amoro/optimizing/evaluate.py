"""Decide whether a table needs self-optimizing, and of which kind, exactly as Apache Amoro does.

Every partition (of every partition spec: files written before a spec change form their own
partitions) is classified separately, following Amoro's ``CommonPartitionEvaluator``:

- **fragment**: ``size <= fragmentSize`` (``target-size / fragment-ratio``); always rewritten.
- **undersized segment**: ``fragmentSize < size <= minTargetSize``; bin-packed with others.
- **target-size segment**: ``size > minTargetSize``.

A segment (undersized or target-size) *must be rewritten* when the records of the position
deletes that apply to it exceed ``record_count * major.trigger.duplicate-ratio``; otherwise it needs
a *rewrite-pos* (its deletes merged into one position delete file) when >= 2 position delete files
or any equality delete file apply to it.

Decisions per partition:

- **minor**: ``fragments + equality delete files >= minor.trigger.file-count``; or that sum > 1 and
  the minor interval has passed; or some segment needs a rewrite-pos because of >= 2 position
  delete files.
- **major**: some segment must be rewritten (duplicate ratio), or the undersized segments add up to
  >= target-size and the two smallest fit together in target-size.
- **full**: ``full.trigger.interval >= 0`` and it has passed since the last full optimizing, and the
  partition has something to improve (a delete that applies, >= 2 files below minTargetSize, a
  segment to rewrite, or - in a table with a sort order - a file not written in that order).

The table's kind is the highest kind of any partition (full > major > minor). Delete files that
apply to no live data file ("dangling") are counted but never trigger optimizing.

Cost (Amoro's, for ordering partitions)::

    (fragment + rewrite-segment + undersized bytes) * 2 + rewrite-pos bytes / 10
      + position delete bytes + equality delete bytes + file count * 4 MB

where the file count is the fragments, rewrite segments, undersized and rewrite-pos segments and
the delete files of the partition.

Health score (0..100, 100 = nothing to improve) = 100 minus three penalties:

- **small files, up to 40**: ``40 * excess / data_files`` where ``excess`` is how many more data
  files the table has than ``ceil(total data bytes / target-size)``, the count it would have after
  perfect compaction. One small file in a tiny table costs nothing; 100 small files that fit into
  one target-size file cost 39.6.
- **equality deletes, up to 40**: ``40 * max(min(1, eq records / (data records * duplicate-ratio)),
  min(1, eq files / minor.trigger.file-count))``: equality deletes are the most expensive thing to
  read (every reader joins them against the data).
- **position deletes, up to 20**: the same formula with position deletes, weighted 20.

Only deletes that apply to some live data file count in the health score.

The classification is a pure function, :func:`classify`, over :class:`FileRef` lists, so it can be
tested and benchmarked without a table; :func:`evaluate` lists a table's files and calls it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_amoro.optimizing.config import OptimizingConfig
from airflow_provider_amoro.optimizing.model import FileRef, OptimizingKind
from airflow_provider_amoro.optimizing.scan import DeleteFileIndex, PartitionKey, live_files, partition_key
from airflow_provider_amoro.properties import (
    FULL_TRIGGER_INTERVAL,
    MAJOR_TRIGGER_DUPLICATE_RATIO,
    MINOR_TRIGGER_FILE_COUNT,
    MINOR_TRIGGER_INTERVAL,
)

if TYPE_CHECKING:
    from pyiceberg.table import Table

MB = 1024 * 1024
#: Cost of one file in Amoro's cost formula.
FILE_COST_BYTES = 4 * MB

_RANK: dict[str | None, int] = {None: 0, "minor": 1, "major": 2, "full": 3}

#: At most this many partition reasons are copied into :attr:`TableEvaluation.reasons`.
MAX_TABLE_REASONS = 50


def kind_rank(kind: str | None) -> int:
    """Order of optimizing kinds: None < minor < major < full."""
    return _RANK[kind]


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


@dataclass
class ClassifiedFiles:
    """The classified files of one partition (not serialised; used by the planner).

    Attributes:
        data_files: every live data file of the partition.
        fragments: fragment files.
        undersized: undersized segments (including those that must be rewritten).
        segments: target-size segments (including those that must be rewritten).
        rewrite_segments: segments (undersized or target-size) whose position deletes exceed the
            duplicate ratio.
        rewrite_pos_segments: target-size segments that need a rewrite-pos (>= 2 position delete
            files or an equality delete apply) and are not in ``rewrite_segments``.
        undersized_rewrite_pos: undersized segments that would need a rewrite-pos (a minor
            optimizing merges their deletes; a major rewrites them anyway).
        pos_rewrite_trigger: rewrite-pos segments with >= 2 position delete files (minor trigger).
        with_deletes: data files some delete applies to.
    """

    data_files: list[FileRef] = field(default_factory=list)
    fragments: list[FileRef] = field(default_factory=list)
    undersized: list[FileRef] = field(default_factory=list)
    segments: list[FileRef] = field(default_factory=list)
    rewrite_segments: list[FileRef] = field(default_factory=list)
    rewrite_pos_segments: list[FileRef] = field(default_factory=list)
    undersized_rewrite_pos: list[FileRef] = field(default_factory=list)
    pos_rewrite_trigger: list[FileRef] = field(default_factory=list)
    with_deletes: list[FileRef] = field(default_factory=list)


@dataclass
class PartitionEvaluation:
    """Statistics and decision for one partition of one partition spec.

    Attributes:
        spec_id: the partition spec.
        partition: JSON-safe partition values (spec field order).
        path: human-readable partition (``day=2024-01-01``; empty when unpartitioned).
        data_files: live data files.
        data_bytes: their bytes.
        records: their records.
        fragment_files, fragment_bytes: fragments.
        undersized_files, undersized_bytes: undersized segments.
        segment_files, segment_bytes: target-size segments.
        rewrite_segment_files, rewrite_segment_bytes: segments over the duplicate ratio.
        rewrite_pos_segment_files, rewrite_pos_segment_bytes: segments needing a rewrite-pos.
        pos_delete_files, pos_delete_bytes, pos_delete_records: position deletes applying to a file here.
        eq_delete_files, eq_delete_bytes, eq_delete_records: equality deletes applying to a file here.
        kind: the kind this partition needs, or None.
        cost: Amoro's cost of the partition.
        reasons: why the partition needs (or does not need) optimizing.
    """

    spec_id: int
    partition: list[Any]
    path: str
    data_files: int = 0
    data_bytes: int = 0
    records: int = 0
    fragment_files: int = 0
    fragment_bytes: int = 0
    undersized_files: int = 0
    undersized_bytes: int = 0
    segment_files: int = 0
    segment_bytes: int = 0
    rewrite_segment_files: int = 0
    rewrite_segment_bytes: int = 0
    rewrite_pos_segment_files: int = 0
    rewrite_pos_segment_bytes: int = 0
    pos_delete_files: int = 0
    pos_delete_bytes: int = 0
    pos_delete_records: int = 0
    eq_delete_files: int = 0
    eq_delete_bytes: int = 0
    eq_delete_records: int = 0
    kind: OptimizingKind | None = None
    cost: int = 0
    reasons: list[str] = field(default_factory=list)
    files: ClassifiedFiles = field(default_factory=ClassifiedFiles, repr=False, compare=False)
    delete_refs: list[FileRef] = field(default_factory=list, repr=False, compare=False)

    @property
    def key(self) -> PartitionKey:
        """``(spec_id, partition)`` as a hashable key."""
        return partition_key(FileRef("", "data", 0, 0, self.spec_id, self.partition, 0))

    @property
    def label(self) -> str:
        """``partition day=2024-01-01`` / ``unpartitioned`` (with the spec id when not 0)."""
        text = f"partition {self.path}" if self.path else "unpartitioned"
        return f"{text} (spec {self.spec_id})" if self.spec_id else text

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (without the file lists)."""
        return {
            k: (list(v) if isinstance(v, list) else v)
            for k, v in self.__dict__.items()
            if k not in ("files", "delete_refs")
        }


@dataclass
class TableEvaluation:
    """Whether and how a table should be optimized, with the statistics behind the decision.

    Attributes:
        kind: ``minor``, ``major``, ``full`` or None (nothing to do, or self-optimizing disabled).
        health_score: 0..100 (see the module docs).
        cost: sum of the costs of partitions that need optimizing.
        reasons: plain-English reasons.
        partitions: per-partition statistics (every partition with a live data file), largest cost first.
        snapshot_id: the snapshot evaluated (None: no snapshot).
        sequence_number: its sequence number.
        data_files, data_bytes, records: live data files, bytes and records.
        delete_files, delete_bytes: live delete files (position + equality) and bytes.
        pos_delete_files, eq_delete_files: live delete files by kind.
        dangling_delete_files: delete files that apply to no live data file.
        avg_file_size: average data file size in bytes (0 without data files).
        evaluated_at_ms: the ``now`` of the evaluation.
        config: the configuration used.
        sort_order_id: the table's sort order when it has one (full optimizing sorts by it), else None.
        unsupported: why the table cannot be optimized at all (e.g. Iceberg format v3), else None;
            then ``kind`` is None, nothing is planned, and the reason is the first of ``reasons``.
    """

    kind: OptimizingKind | None
    health_score: int
    cost: int
    reasons: list[str]
    partitions: list[PartitionEvaluation]
    snapshot_id: int | None = None
    sequence_number: int | None = None
    data_files: int = 0
    data_bytes: int = 0
    records: int = 0
    delete_files: int = 0
    delete_bytes: int = 0
    pos_delete_files: int = 0
    eq_delete_files: int = 0
    dangling_delete_files: int = 0
    avg_file_size: int = 0
    evaluated_at_ms: int = 0
    config: OptimizingConfig = field(default_factory=OptimizingConfig)
    index: DeleteFileIndex | None = field(default=None, repr=False, compare=False)
    sort_order_id: int | None = None
    unsupported: str | None = None

    @property
    def needs_optimizing(self) -> bool:
        """Whether :attr:`kind` is not None."""
        return self.kind is not None

    @property
    def pending_partitions(self) -> list[PartitionEvaluation]:
        """Partitions that need optimizing, largest cost first."""
        return [p for p in self.partitions if p.kind is not None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (partition statistics included, file lists not)."""
        return {
            "kind": self.kind,
            "health_score": self.health_score,
            "cost": self.cost,
            "reasons": list(self.reasons),
            "snapshot_id": self.snapshot_id,
            "sequence_number": self.sequence_number,
            **self._file_totals(),
            "evaluated_at_ms": self.evaluated_at_ms,
            "sort_order_id": self.sort_order_id,
            "unsupported": self.unsupported,
            "properties": self.config.to_properties(),
            "totals": self.totals(),
            "partitions": [p.to_dict() for p in self.partitions],
        }

    def _file_totals(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _FILE_TOTALS}

    def totals(self) -> dict[str, int]:
        """Table totals in one dict (also at the top level of :meth:`to_dict`)."""
        return {
            **self._file_totals(),
            "partitions": len(self.partitions),
            "pending_partitions": len(self.pending_partitions),
        }


#: Table totals of an :class:`TableEvaluation`, in the order ``to_dict`` and ``totals`` list them.
_FILE_TOTALS = (
    "data_files",
    "data_bytes",
    "records",
    "delete_files",
    "delete_bytes",
    "pos_delete_files",
    "eq_delete_files",
    "dangling_delete_files",
    "avg_file_size",
)


def _interval_passed(now_ms: int, last_ms: int | None, interval_ms: int) -> bool:
    """Amoro's interval rule: ``interval >= 0 and now - last > interval``; None last time = never."""
    if interval_ms < 0:
        return False
    if last_ms is None:
        return True
    return now_ms - last_ms > interval_ms


def _classify_partition(
    p: PartitionEvaluation,
    config: OptimizingConfig,
    index: DeleteFileIndex,
    *,
    now_ms: int,
    last_minor_ms: int | None,
    last_full_ms: int | None,
    sort_order_id: int | None = None,
) -> None:
    any_deletes = len(index) > 0
    _sort_files(p, config, index, any_deletes)
    _count_deletes_and_cost(p, config, index, any_deletes)
    p.kind = _choose_kind(
        p,
        config,
        now_ms=now_ms,
        last_minor_ms=last_minor_ms,
        last_full_ms=last_full_ms,
        sort_order_id=sort_order_id,
    )


def _sort_files(
    p: PartitionEvaluation, config: OptimizingConfig, index: DeleteFileIndex, any_deletes: bool
) -> None:
    """Sort the partition's data files into fragments, undersized and target-size segments."""
    files = p.files
    fragment_size = config.fragment_size
    min_target = config.min_target_size
    ratio = config.major_duplicate_ratio
    key = index.key_of(files.data_files[0]) if files.data_files else None
    for f in files.data_files:
        p.data_bytes += f.size_bytes
        p.records += f.record_count
        pos_files, pos_records, eq_files = index.summary(f, key) if any_deletes else (0, 0, 0)
        if pos_files or eq_files:
            files.with_deletes.append(f)
        if f.size_bytes <= fragment_size:
            files.fragments.append(f)
            continue
        undersized = f.size_bytes <= min_target
        (files.undersized if undersized else files.segments).append(f)
        if pos_records > f.record_count * ratio:
            files.rewrite_segments.append(f)
        elif pos_files >= 2 or eq_files > 0:
            # as in Amoro, an undersized segment stays in its class (major rewrites it); only
            # target-size segments count as rewrite-pos segments
            (files.undersized_rewrite_pos if undersized else files.rewrite_pos_segments).append(f)
            if pos_files >= 2:
                files.pos_rewrite_trigger.append(f)
    p.data_files = len(files.data_files)
    p.fragment_files, p.fragment_bytes = len(files.fragments), _size(files.fragments)
    p.undersized_files, p.undersized_bytes = len(files.undersized), _size(files.undersized)
    p.segment_files, p.segment_bytes = len(files.segments), _size(files.segments)
    p.rewrite_segment_files, p.rewrite_segment_bytes = (
        len(files.rewrite_segments),
        _size(files.rewrite_segments),
    )
    p.rewrite_pos_segment_files = len(files.rewrite_pos_segments)
    p.rewrite_pos_segment_bytes = _size(files.rewrite_pos_segments)


def _count_deletes_and_cost(
    p: PartitionEvaluation, config: OptimizingConfig, index: DeleteFileIndex, any_deletes: bool
) -> None:
    """Count the deletes that apply to the partition and compute its optimizing cost."""
    files = p.files
    min_target = config.min_target_size
    # the deletes that apply to some data file of this partition
    p.delete_refs = index.for_data_files(files.data_files) if any_deletes and files.with_deletes else []
    for d in p.delete_refs:
        if d.content == "position_deletes":
            p.pos_delete_files += 1
            p.pos_delete_bytes += d.size_bytes
            p.pos_delete_records += d.record_count
        else:
            p.eq_delete_files += 1
            p.eq_delete_bytes += d.size_bytes
            p.eq_delete_records += d.record_count

    # undersized segments over the duplicate ratio count as rewrite segments, not twice
    rewritten_undersized = [f for f in files.rewrite_segments if f.size_bytes <= min_target]
    undersized_only_files = p.undersized_files - len(rewritten_undersized)
    undersized_only_bytes = p.undersized_bytes - _size(rewritten_undersized)
    file_count = (
        p.fragment_files
        + p.rewrite_segment_files
        + undersized_only_files
        + p.rewrite_pos_segment_files
        + p.pos_delete_files
        + p.eq_delete_files
    )
    p.cost = (
        (p.fragment_bytes + p.rewrite_segment_bytes + undersized_only_bytes) * 2
        + p.rewrite_pos_segment_bytes // 10
        + p.pos_delete_bytes
        + p.eq_delete_bytes
        + FILE_COST_BYTES * file_count
    )


def _choose_kind(
    p: PartitionEvaluation,
    config: OptimizingConfig,
    *,
    now_ms: int,
    last_minor_ms: int | None,
    last_full_ms: int | None,
    sort_order_id: int | None,
) -> OptimizingKind | None:
    """The optimizing kind the partition's triggers reach (full, major, minor), reasons appended."""
    files = p.files
    ratio = config.major_duplicate_ratio
    label = p.label
    kind: OptimizingKind | None = None
    reasons = p.reasons
    # full
    if _interval_passed(now_ms, last_full_ms, config.full_trigger_interval_ms):
        below_min = p.fragment_files + p.undersized_files
        unsorted = sort_order_id is not None and any(
            f.sort_order_id != sort_order_id for f in files.data_files
        )
        if p.pos_delete_files or p.eq_delete_files or below_min >= 2 or p.rewrite_segment_files or unsorted:
            kind = OptimizingKind.FULL
            since = (
                "never optimized fully"
                if last_full_ms is None
                else f"last full {now_ms - last_full_ms} ms ago"
            )
            reasons.append(
                f"{label}: {FULL_TRIGGER_INTERVAL} {config.full_trigger_interval_ms} ms passed ({since})"
            )
    # major
    if p.rewrite_segment_files:
        kind = kind or OptimizingKind.MAJOR
        reasons.append(
            f"{label}: {p.rewrite_segment_files} segment(s) with position-delete records over "
            f"{MAJOR_TRIGGER_DUPLICATE_RATIO} {ratio} of their records"
        )
    undersized_sizes = sorted(f.size_bytes for f in files.undersized)
    if (
        p.undersized_bytes >= config.target_size
        and len(undersized_sizes) >= 2
        and undersized_sizes[0] + undersized_sizes[1] <= config.target_size
    ):
        kind = kind or OptimizingKind.MAJOR
        reasons.append(
            f"{label}: {p.undersized_files} undersized segments add up to {_mb(p.undersized_bytes)} "
            f">= target-size {_mb(config.target_size)}"
        )
    # minor
    small = p.fragment_files + p.eq_delete_files
    if p.eq_delete_files:
        counted = f"{p.fragment_files} fragments + {p.eq_delete_files} equality-delete files = {small}"
    else:
        counted = f"{p.fragment_files} fragments"
    if small >= config.minor_trigger_file_count:
        kind = kind or OptimizingKind.MINOR
        reasons.append(f"{label}: {counted} >= {MINOR_TRIGGER_FILE_COUNT} {config.minor_trigger_file_count}")
    elif small > 1 and _interval_passed(now_ms, last_minor_ms, config.minor_trigger_interval_ms):
        kind = kind or OptimizingKind.MINOR
        since = "never optimized" if last_minor_ms is None else f"last minor {now_ms - last_minor_ms} ms ago"
        reasons.append(
            f"{label}: {counted} > 1 and {MINOR_TRIGGER_INTERVAL} {config.minor_trigger_interval_ms} ms "
            f"passed ({since})"
        )
    if files.pos_rewrite_trigger:
        kind = kind or OptimizingKind.MINOR
        reasons.append(
            f"{label}: {len(files.pos_rewrite_trigger)} segment(s) with >= 2 position-delete files"
        )
    return kind


def _size(files: Iterable[FileRef]) -> int:
    return sum(f.size_bytes for f in files)


def health_score(
    *,
    data_files: int,
    data_bytes: int,
    records: int,
    pos_delete_files: int,
    pos_delete_records: int,
    eq_delete_files: int,
    eq_delete_records: int,
    config: OptimizingConfig,
) -> int:
    """The table's health score, 0..100 (see the module docs for the formula)."""
    small_penalty = 0.0
    if data_files:
        ideal = max(1, math.ceil(data_bytes / config.target_size))
        excess = max(0, data_files - ideal)
        small_penalty = 40.0 * excess / data_files
    budget = max(1.0, records * config.major_duplicate_ratio)
    count_budget = max(1, config.minor_trigger_file_count)

    def penalty(files: int, recs: int, weight: float) -> float:
        if not files:
            return 0.0
        return weight * max(min(1.0, recs / budget), min(1.0, files / count_budget))

    score = 100.0 - small_penalty - penalty(eq_delete_files, eq_delete_records, 40.0)
    score -= penalty(pos_delete_files, pos_delete_records, 20.0)
    return max(0, min(100, round(score)))


def classify(
    data_files: Sequence[FileRef],
    delete_files: Sequence[FileRef],
    config: OptimizingConfig | None = None,
    *,
    now_ms: int | None = None,
    last_minor_ms: int | None = None,
    last_major_ms: int | None = None,
    last_full_ms: int | None = None,
    partition_path: Callable[[int, list[Any]], str] | None = None,
    snapshot_id: int | None = None,
    sequence_number: int | None = None,
    extra_reasons: Sequence[str] = (),
    sort_order_id: int | None = None,
) -> TableEvaluation:
    """Classify files and decide the optimizing kind: the pure core of :func:`evaluate`.

    Args:
        data_files: live data files.
        delete_files: live position and equality delete files.
        config: the configuration (defaults: Amoro's).
        now_ms: evaluation time, epoch ms (default: the clock).
        last_minor_ms: end of the last minor optimizing, epoch ms; None: never.
        last_major_ms: end of the last major optimizing (Amoro has no major interval; kept for the
            record and for symmetry).
        last_full_ms: end of the last full optimizing; None: never.
        partition_path: ``(spec_id, partition) -> "day=2024-01-01"``; default shows raw values.
        snapshot_id: the snapshot the files come from (copied into the result).
        sequence_number: that snapshot's sequence number.
        extra_reasons: reasons to put first (e.g. about a filter).
        sort_order_id: the table's sort order id when it has a (non-empty) sort order.

    Returns:
        The evaluation.
    """
    del last_major_ms  # Amoro decides major by content only
    config = config or OptimizingConfig()
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    path_of = partition_path or (lambda spec_id, part: "/".join(f"{i}={v}" for i, v in enumerate(part)))
    index = DeleteFileIndex(delete_files)

    by_key: dict[PartitionKey, PartitionEvaluation] = {}
    for f in data_files:
        key = index.key_of(f)
        p = by_key.get(key)
        if p is None:
            p = by_key[key] = PartitionEvaluation(spec_id=f.spec_id, partition=f.partition, path="")
        p.files.data_files.append(f)
    for p in by_key.values():
        p.path = path_of(p.spec_id, p.partition)
        _classify_partition(
            p,
            config,
            index,
            now_ms=now,
            last_minor_ms=last_minor_ms,
            last_full_ms=last_full_ms,
            sort_order_id=sort_order_id,
        )
    partitions = sorted(by_key.values(), key=lambda p: (-p.cost, p.spec_id, p.path, str(p.partition)))

    data_bytes = sum(p.data_bytes for p in partitions)
    records = sum(p.records for p in partitions)
    dangling = index.dangling(data_files) if len(index) else []
    score = _table_health(data_files, delete_files, dangling, data_bytes, records, config)
    pending = [p for p in partitions if p.kind is not None]
    kind, reasons = _table_kind_and_reasons(pending, data_files, dangling, extra_reasons, config)

    return TableEvaluation(
        kind=kind,
        health_score=score,
        cost=sum(p.cost for p in pending),
        reasons=reasons,
        partitions=partitions,
        snapshot_id=snapshot_id,
        sequence_number=sequence_number,
        data_files=len(data_files),
        data_bytes=data_bytes,
        records=records,
        delete_files=len(delete_files),
        delete_bytes=sum(d.size_bytes for d in delete_files),
        pos_delete_files=sum(1 for d in delete_files if d.content == "position_deletes"),
        eq_delete_files=sum(1 for d in delete_files if d.content == "equality_deletes"),
        dangling_delete_files=len(dangling),
        avg_file_size=data_bytes // len(data_files) if data_files else 0,
        evaluated_at_ms=now,
        config=config,
        index=index,
        sort_order_id=sort_order_id,
    )


def _table_health(
    data_files: Sequence[FileRef],
    delete_files: Sequence[FileRef],
    dangling: Sequence[FileRef],
    data_bytes: int,
    records: int,
    config: OptimizingConfig,
) -> int:
    """The table's health score; dangling delete files do not count against it."""
    dangling_paths = {d.path for d in dangling}
    live_deletes = [d for d in delete_files if d.path not in dangling_paths]
    pos_live = [d for d in live_deletes if d.content == "position_deletes"]
    eq_live = [d for d in live_deletes if d.content == "equality_deletes"]
    return health_score(
        data_files=len(data_files),
        data_bytes=data_bytes,
        records=records,
        pos_delete_files=len(pos_live),
        pos_delete_records=sum(d.record_count for d in pos_live),
        eq_delete_files=len(eq_live),
        eq_delete_records=sum(d.record_count for d in eq_live),
        config=config,
    )


def _table_kind_and_reasons(
    pending: Sequence[PartitionEvaluation],
    data_files: Sequence[FileRef],
    dangling: Sequence[FileRef],
    extra_reasons: Sequence[str],
    config: OptimizingConfig,
) -> tuple[OptimizingKind | None, list[str]]:
    """The table's kind (the highest of its partitions') and its reasons, in the order shown."""
    kind: OptimizingKind | None = None
    for p in pending:
        if kind_rank(p.kind) > kind_rank(kind):
            kind = p.kind
    reasons = list(extra_reasons)
    if not data_files:
        reasons.append("no live data files")
    for p in pending[:MAX_TABLE_REASONS]:
        reasons.extend(p.reasons)
    if len(pending) > MAX_TABLE_REASONS:
        reasons.append(f"... and {len(pending) - MAX_TABLE_REASONS} more partitions need optimizing")
    if dangling:
        reasons.append(
            f"{len(dangling)} delete file(s) apply to no live data file (dangling; they do not trigger "
            "optimizing and are removed by clean-dangling-delete-files or a rewrite)"
        )
    if data_files and not pending:
        reasons.append("no partition reaches a minor, major or full trigger")
    if not config.enabled:
        reasons.insert(0, "self-optimizing.enabled=false: self-optimizing is disabled for this table")
        kind = None
    return kind, reasons


def unsupported_reason(table: Table) -> str | None:
    """Why the engine cannot optimize ``table`` at all, or None.

    Iceberg format v3 (deletion vectors, row lineage) is refused here, at evaluation, so that no
    process is planned or executed every cycle only to fail at the commit.
    """
    from airflow_provider_amoro.formats.iceberg import SUPPORTED_FORMAT_VERSIONS

    version = int(table.metadata.format_version)
    if version not in SUPPORTED_FORMAT_VERSIONS:
        return (
            f"Iceberg format v{version} is not supported yet (deletion vectors): the table is not "
            "optimized; only format v1 and v2 tables are"
        )
    return None


def evaluate(
    table: Table,
    *,
    now: int | None = None,
    last_minor_ms: int | None = None,
    last_major_ms: int | None = None,
    last_full_ms: int | None = None,
    config: OptimizingConfig | None = None,
    snapshot_id: int | None = None,
) -> TableEvaluation:
    """Evaluate a table: file classes per partition, the optimizing kind it needs, cost, health.

    Args:
        table: the pyiceberg table.
        now: evaluation time, epoch milliseconds (default: the clock).
        last_minor_ms: end of the last minor optimizing, epoch ms; None: never.
        last_major_ms: end of the last major optimizing; None: never.
        last_full_ms: end of the last full optimizing; None: never.
        config: the configuration; default: read from the table's properties.
        snapshot_id: the snapshot to evaluate; default: the current one.

    Returns:
        The :class:`TableEvaluation`.

    Raises:
        InvalidPropertyError: a ``self-optimizing.*`` property has a bad value.
    """
    if config is None:
        config = OptimizingConfig.from_table(table)
    else:
        config.bound_filter(table.schema())  # a filter naming an unknown column: InvalidPropertyError
    refused = unsupported_reason(table)
    if refused is not None:
        current = table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(snapshot_id)
        return TableEvaluation(
            kind=None,
            health_score=100,
            cost=0,
            reasons=[refused],
            partitions=[],
            snapshot_id=current.snapshot_id if current is not None else None,
            sequence_number=current.sequence_number if current is not None else None,
            evaluated_at_ms=int(time.time() * 1000) if now is None else int(now),
            config=config,
            unsupported=refused,
        )
    files = live_files(table, snapshot_id, row_filter=config.filter_expression)
    extra = []
    if config.filter is not None:
        extra.append(f"self-optimizing.filter {config.filter!r} limits the files considered")
    return classify(
        files.data_files,
        files.delete_files,
        config,
        now_ms=now,
        last_minor_ms=last_minor_ms,
        last_major_ms=last_major_ms,
        last_full_ms=last_full_ms,
        partition_path=files.partition_path,
        snapshot_id=files.snapshot_id,
        sequence_number=files.sequence_number,
        extra_reasons=extra,
        sort_order_id=None if table.sort_order().is_unsorted else table.sort_order().order_id,
    )
