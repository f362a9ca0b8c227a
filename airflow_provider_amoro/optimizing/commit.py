"""The REPLACE commit of an optimizing process: the part that must never lose a row.

:func:`commit` turns a plan and its task results into ONE Iceberg snapshot with operation
``replace`` and summary ``snapshot-producer=OPTIMIZE``. It follows the semantics of Iceberg's
``RewriteFiles`` (Java ``BaseRewriteFiles`` on ``MergingSnapshotProducer``), re-implemented on
its own snapshot producer (pyiceberg 0.12 has no REPLACE producer), committed through the catalog
with requirements and updates built once (no pyiceberg ``Transaction``, whose deep copies of the
table metadata grow with the table's history):

- **Removed**: the rewritten data files, and every delete file of the plan that after the commit
  applies to no live data file (a delete file still applying to a data file that is not rewritten
  stays; for rewrite-pos tasks, the delete files merged into the new position-delete file no longer
  count for the data files they were merged for).
- **Added**: the task outputs (data files, and the position-delete files of rewrite-pos tasks) with
  the *data sequence number of the snapshot the plan was made on*, written explicitly into the
  manifest entries (not inherited). An equality delete committed while the optimizer ran has a
  higher sequence number, so it still applies to the rewritten rows.
- **Validated** against every snapshot committed since the plan's base snapshot: a rewritten data
  file removed concurrently, or a new position delete that references a rewritten data file, fails
  the commit with :class:`CommitValidationError`. Concurrent appends and concurrent equality deletes are
  fine, unless such a delete carries a data sequence number not above the plan's base (it would
  stop applying to the rewritten rows): then the commit is refused too. As a safety net against
  planning mistakes, a delete file that already existed at the base snapshot and applies to a
  rewritten data file must have been read by that file's task.
- **Retried** on catalog commit conflicts (``CommitFailedException``): refresh, validate again,
  rebuild the manifests, with exponential backoff.
- **Idempotent**: the snapshot summary carries the plan id (``amoro.process-id``). A second commit
  of the same plan (a retried or cleared commit task) finds the landed snapshot among the retained
  snapshots, or, when that snapshot was expired, finds the outputs live at the head, and returns
  the landed result (``already_committed=True``) instead of committing or failing.
- **Cleaned** on a failure known to have committed nothing (validation, conflicts after every
  retry, an error before or rejected by the catalog call): the manifests written for the attempt
  and the output files of the tasks are deleted, then the error is raised. Outputs are deleted
  only after checking that no retained snapshot references them
  (:func:`~.cleanup.delete_unreferenced`). A commit whose outcome is unknown
  (``CommitStateUnknownException``, an interruption during the catalog call) or interrupted by a
  ``BaseException`` (task timeout, kill) keeps every file: the caller resolves the process later
  by its plan id.

Format v1 tables have no sequence numbers and no delete files; the same code commits a v1 REPLACE.

:func:`replace_files` is the lower-level entry point (no plan): maintenance reuses it to drop dangling
delete files.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException, ValidationException
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    ManifestWriter,
    write_manifest,
    write_manifest_list,
)
from pyiceberg.table.snapshots import (
    Operation,
    Snapshot,
    SnapshotSummaryCollector,
    Summary,
    update_snapshot_summaries,
)

from airflow_provider_amoro.iceberg_compat import batched_manifest_blocks, commit_updates
from airflow_provider_amoro.optimizing.cleanup import (
    PROCESS_ID_KEY,
    CleanupResult,
    delete_unreferenced,
    snapshot_of_process,
)
from airflow_provider_amoro.optimizing.config import InvalidPropertyError
from airflow_provider_amoro.optimizing.delete_files import POS_FILE_PATH_FIELD_ID, DeleteManifestWriterV2
from airflow_provider_amoro.optimizing.manifests import MANIFEST_CACHE, ManifestCache
from airflow_provider_amoro.optimizing.model import (
    FileRef,
    IOCounters,
    OptimizingPlan,
    TaskResult,
    content_name,
    datafile_from_dict,
    delete_applies,
    encode_partition,
)
from airflow_provider_amoro.properties import ALLOW_PARTIAL_COMMIT, PRODUCER_OPTIMIZE, SNAPSHOT_PRODUCER

if TYPE_CHECKING:
    from pyiceberg.io import FileIO, OutputFile
    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.update import TableRequirement, TableUpdate

logger = logging.getLogger(__name__)

SUMMARY_PREFIX = "optimizing."
"""Prefix of the optimizing metrics this module writes into the snapshot summary."""


class CommitValidationError(ValidationException):
    """The table changed since the plan in a way that makes the rewrite unsafe; nothing was committed."""


@dataclass
class CommitResult:
    """What one REPLACE commit did.

    Attributes:
        snapshot_id: the new snapshot, or None when there was nothing to commit.
        removed_data_files: data files removed (rewritten).
        added_data_files: data files added.
        removed_delete_files: delete files removed (merged into rewrite-pos files or dangling).
        added_delete_files: position-delete files added (rewrite-pos).
        removed_data_bytes: bytes of removed data files.
        added_data_bytes: bytes of added data files.
        removed_delete_bytes: bytes of removed delete files.
        added_delete_bytes: bytes of added delete files.
        removed_records: records of removed data files (before deletes).
        added_records: records of added data files.
        sequence_number: data sequence number the added files carry (None on v1 tables).
        attempts: catalog commit attempts made (1 without conflicts).
        duration_s: wall time of the commit.
        summary: the snapshot summary as committed.
        already_committed: the plan had already landed (a repeated commit); nothing new was
            committed and ``snapshot_id`` is the snapshot that committed it.
    """

    snapshot_id: int | None
    removed_data_files: int = 0
    added_data_files: int = 0
    removed_delete_files: int = 0
    added_delete_files: int = 0
    removed_data_bytes: int = 0
    added_data_bytes: int = 0
    removed_delete_bytes: int = 0
    added_delete_bytes: int = 0
    removed_records: int = 0
    added_records: int = 0
    sequence_number: int | None = None
    attempts: int = 0
    duration_s: float = 0.0
    summary: dict[str, str] = field(default_factory=dict)
    already_committed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# The state of the table at the head of the main branch
# --------------------------------------------------------------------------------------------------


def _ref_of(entry: ManifestEntry) -> FileRef:
    df = entry.data_file
    return FileRef(
        path=df.file_path,
        content=content_name(df.content),
        size_bytes=int(df.file_size_in_bytes),
        record_count=int(df.record_count),
        spec_id=int(df.spec_id),
        partition=encode_partition(df.partition),
        data_sequence_number=int(entry.sequence_number or 0),
        file_sequence_number=entry.file_sequence_number,
        equality_ids=list(df.equality_ids) if df.equality_ids else None,
    )


def _partition_key(ref: FileRef) -> str:
    return json.dumps([ref.spec_id, ref.partition], sort_keys=True, default=str)


@dataclass
class HeadState:
    """Live files of the current snapshot of the main branch, read once per commit attempt.

    Attributes:
        metadata: the table metadata the attempt works on.
        snapshot: the head snapshot (None for a table without snapshots).
        manifests: each manifest of the head snapshot with its live entries.
        live: live entry of every file, by path.
    """

    metadata: TableMetadata
    snapshot: Snapshot | None
    manifests: list[tuple[ManifestFile, list[ManifestEntry]]]
    live: dict[str, ManifestEntry]

    @classmethod
    def load(cls, metadata: TableMetadata, io: FileIO, cache: ManifestCache | None = None) -> HeadState:
        """Read the manifests of the head snapshot of ``main``.

        Args:
            metadata: the table metadata (not copied: it must not change while the state is used).
            io: the table's FileIO.
            cache: live entries by manifest path (default: the process-wide
                :data:`~.manifests.MANIFEST_CACHE`); manifests are immutable, so only the manifests
                committed since the last read (by ``evaluate``, ``plan`` or an earlier attempt) are
                read, in parallel.
        """
        snapshot = metadata.current_snapshot()
        manifests: list[tuple[ManifestFile, list[ManifestEntry]]] = []
        live: dict[str, ManifestEntry] = {}
        if snapshot is not None:
            known = cache if cache is not None else MANIFEST_CACHE
            all_manifests = known.manifest_list(io, snapshot)
            for manifest, entries in zip(all_manifests, known.read_all(io, all_manifests), strict=True):
                manifests.append((manifest, entries))
                for entry in entries:
                    live[entry.data_file.file_path] = entry
        return cls(metadata=metadata, snapshot=snapshot, manifests=manifests, live=live)

    def refs(self, content: str | None = None) -> list[FileRef]:
        """Live files as :class:`FileRef` (optionally only one content kind)."""
        out = [_ref_of(e) for e in self.live.values()]
        return [r for r in out if content is None or r.content == content]

    def snapshots_since(self, base_snapshot_id: int | None) -> list[Snapshot]:
        """Snapshots committed after ``base_snapshot_id`` up to the head, newest first.

        Raises:
            CommitValidationError: the base snapshot is not an ancestor of the head (expired, or the
                branch was rolled back or replaced).
        """
        out: list[Snapshot] = []
        snap = self.snapshot
        while snap is not None:
            if base_snapshot_id is not None and snap.snapshot_id == base_snapshot_id:
                return out
            out.append(snap)
            parent = snap.parent_snapshot_id
            snap = self.metadata.snapshot_by_id(parent) if parent is not None else None
        if base_snapshot_id is None:
            return out
        raise CommitValidationError(
            f"the plan's base snapshot {base_snapshot_id} is no longer an ancestor of the current "
            f"snapshot {self.snapshot.snapshot_id if self.snapshot else None}; plan again"
        )


# --------------------------------------------------------------------------------------------------
# Position-delete references
# --------------------------------------------------------------------------------------------------


class _PosDeleteIndex:
    """Which data files a position-delete file references, by ``file_path`` bounds, then by reading it."""

    def __init__(self, io: FileIO) -> None:
        self._io = io
        self._paths: dict[str, frozenset[str]] = {}

    @staticmethod
    def bounds_cover(df: DataFile, path: str) -> bool:
        """Whether the delete file's ``file_path`` bounds (when present) include ``path``."""
        lower = (df.lower_bounds or {}).get(POS_FILE_PATH_FIELD_ID)
        upper = (df.upper_bounds or {}).get(POS_FILE_PATH_FIELD_ID)
        raw = path.encode("utf-8")
        # Truncated string bounds stay valid: a truncated lower bound is a prefix (<=), a truncated
        # upper bound is rounded up (>=).
        if lower is not None and raw < lower:
            return False
        return not (upper is not None and raw > upper)

    def referenced(self, df: DataFile) -> frozenset[str]:
        """Every ``file_path`` value of a position-delete file (read once, then cached)."""
        cached = self._paths.get(df.file_path)
        if cached is not None:
            return cached
        lower = (df.lower_bounds or {}).get(POS_FILE_PATH_FIELD_ID)
        upper = (df.upper_bounds or {}).get(POS_FILE_PATH_FIELD_ID)
        if lower is not None and lower == upper and df.record_count > 0:
            # One referenced file; a truncated bound cannot be equal on both ends for a longer path
            # unless both are the full path, so this is exact.
            paths = frozenset({lower.decode("utf-8")})
        else:
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            with self._io.new_input(df.file_path).open() as stream:
                read = pq.read_table(stream, columns=["file_path"], read_dictionary=["file_path"])
                column = read.column("file_path")
            # dictionary-encoded: the distinct paths are the dictionary values each chunk uses
            paths = frozenset(
                str(p)
                for chunk in column.chunks
                for p in chunk.dictionary.take(pc.unique(chunk.indices)).to_pylist()
            )
        self._paths[df.file_path] = paths
        return paths

    def references(self, df: DataFile, path: str) -> bool:
        """Whether the position-delete file ``df`` deletes rows of the data file ``path``."""
        return self.bounds_cover(df, path) and path in self.referenced(df)


# --------------------------------------------------------------------------------------------------
# The REPLACE snapshot producer
# --------------------------------------------------------------------------------------------------


class _ReplaceFiles:
    """A REPLACE snapshot: removes files by path and adds files with an explicit data sequence number.

    Built once per commit attempt from the head state, without pyiceberg's ``Transaction`` (which
    deep-copies the whole table metadata, every snapshot included, on each access): the manifests
    and the manifest list are written here, and :meth:`build` returns the catalog updates
    (``AddSnapshot``, ``SetSnapshotRef main``) and requirements (table UUID, ``main`` still at the
    head the attempt read). Validation happens before the producer is built (see
    :func:`_commit_with_retries`); retries build a fresh producer.

    Manifests: one new manifest per (content, spec) for the added files; one per (content, spec)
    holding the removed files as DELETED entries; a manifest that loses only some of its files is
    rewritten with the others as EXISTING entries (sequence numbers kept); a manifest left without
    live entries (e.g. the DELETED entries of an earlier commit) is dropped; the other manifests are
    reused, except that small ones are merged (see :func:`_merge_plan`).
    """

    def __init__(
        self,
        table: Table,
        state: HeadState,
        remove_paths: set[str],
        add_files: Sequence[DataFile],
        sequence_number: int | None,
        snapshot_properties: dict[str, str],
    ) -> None:
        from pyiceberg.table import TableProperties

        self._io = table.io
        self._metadata = state.metadata
        self._specs = state.metadata.specs()
        self._schema = state.metadata.schema()
        self._location_provider = table.location_provider()
        self._state = state
        self._remove_paths = remove_paths
        self._snapshot_properties = snapshot_properties
        self._sequence_number = sequence_number if self._format_version >= 2 else None
        self._added_data_files = list(add_files)
        self._removed: list[ManifestEntry] = [
            e for e in (state.live.get(p) for p in sorted(remove_paths)) if e is not None
        ]
        self.commit_uuid = uuid.uuid4()
        self.snapshot_id = state.metadata.new_snapshot_id()
        self._parent_snapshot_id = state.snapshot.snapshot_id if state.snapshot is not None else None
        self._compression: Any = state.metadata.properties.get(
            TableProperties.WRITE_AVRO_COMPRESSION, TableProperties.WRITE_AVRO_COMPRESSION_DEFAULT
        )
        self._manifest_counter = itertools.count(0)
        self._written: list[str] = []
        self.merged_manifests = 0
        """Small manifests merged into others by this snapshot."""
        self.dropped_manifests = 0
        """Manifests left without live entries, not carried into this snapshot."""

    @property
    def _format_version(self) -> int:
        return int(self._metadata.format_version)

    @property
    def added_files(self) -> list[DataFile]:
        """Files this snapshot adds."""
        return self._added_data_files

    @property
    def removed_entries(self) -> list[ManifestEntry]:
        """Live entries this snapshot removes."""
        return self._removed

    def _new_output(self, name: str) -> OutputFile:
        path = self._location_provider.new_metadata_location(name)
        self._written.append(path)
        return self._io.new_output(path)

    def _touches(self, entries: list[ManifestEntry]) -> bool:
        return any(e.data_file.file_path in self._remove_paths for e in entries)

    def _writer(self, spec_id: int, content: ManifestContent) -> ManifestWriter:
        output = self._new_output(f"{self.commit_uuid}-m{next(self._manifest_counter)}.avro")
        spec = self._specs[spec_id]
        if content == ManifestContent.DELETES:
            if self._format_version < 2:
                raise ValueError("delete files need a format v2 table")
            return DeleteManifestWriterV2(spec, self._schema, output, self.snapshot_id, self._compression)
        return write_manifest(
            format_version=self._metadata.format_version,
            spec=spec,
            schema=self._schema,
            output_file=output,
            snapshot_id=self.snapshot_id,
            avro_compression=self._compression,
        )

    @staticmethod
    def _group(entries: Iterable[DataFile]) -> dict[tuple[ManifestContent, int], list[DataFile]]:
        groups: dict[tuple[ManifestContent, int], list[DataFile]] = defaultdict(list)
        for df in entries:
            kind = ManifestContent.DATA if df.content == DataFileContent.DATA else ManifestContent.DELETES
            groups[(kind, int(df.spec_id))].append(df)
        return dict(sorted(groups.items(), key=lambda kv: (kv[0][0].value, kv[0][1])))

    def _manifests(self) -> list[ManifestFile]:
        out: list[ManifestFile] = []
        # 1. Added files with the explicit data sequence number; the file sequence number is left
        #    unset, so readers inherit this snapshot's.
        for (kind, spec_id), files in self._group(self._added_data_files).items():
            with self._writer(spec_id, kind) as writer, batched_manifest_blocks(writer):
                for df in files:
                    writer.add_entry(
                        ManifestEntry.from_args(
                            status=ManifestEntryStatus.ADDED,
                            snapshot_id=self.snapshot_id,
                            sequence_number=self._sequence_number,
                            file_sequence_number=None,
                            data_file=df,
                        )
                    )
            out.append(writer.to_manifest_file())
        # 2. Removed files as DELETED entries (their sequence numbers kept).
        removed = {e.data_file.file_path: e for e in self._removed}
        for (kind, spec_id), files in self._group(e.data_file for e in self._removed).items():
            with self._writer(spec_id, kind) as writer, batched_manifest_blocks(writer):
                for df in files:
                    writer.delete(removed[df.file_path])
            out.append(writer.to_manifest_file())
        # 3. Other manifests: rewritten without the removed files, reused as they are, or merged
        #    when small and many. A manifest without live entries (only DELETED ones, written by an
        #    earlier snapshot) is dropped, as Iceberg does: every later commit would carry it.
        reused: list[tuple[ManifestFile, list[ManifestEntry]]] = []
        for manifest, entries in self._state.manifests:
            if not entries:
                self.dropped_manifests += 1
                continue
            if not self._touches(entries):
                reused.append((manifest, entries))
                continue
            kept = [e for e in entries if e.data_file.file_path not in self._remove_paths]
            if kept:
                out.append(self._write_existing(manifest.partition_spec_id, manifest.content, kept))
        for group in _merge_plan(reused, self._metadata.properties):
            if len(group) == 1:
                out.append(group[0][0])
                continue
            first = group[0][0]
            merged = [e for _, entries in group for e in entries]
            out.append(self._write_existing(first.partition_spec_id, first.content, merged))
            self.merged_manifests += len(group)
        return out

    def _write_existing(
        self, spec_id: int, content: ManifestContent, entries: list[ManifestEntry]
    ) -> ManifestFile:
        with self._writer(spec_id, content) as writer, batched_manifest_blocks(writer):
            for e in entries:
                writer.existing(e)
        return writer.to_manifest_file()

    def _summary(self) -> Summary:
        from pyiceberg.table import TableProperties

        schema = self._schema
        specs = self._specs
        limit = self._metadata.properties.get(
            TableProperties.WRITE_PARTITION_SUMMARY_LIMIT,
            TableProperties.WRITE_PARTITION_SUMMARY_LIMIT_DEFAULT,
        )
        ssc = SnapshotSummaryCollector(partition_summary_limit=int(limit))
        for df in self._added_data_files:
            ssc.add_file(df, schema=schema, partition_spec=specs[df.spec_id])
        for e in self._removed:
            ssc.remove_file(e.data_file, schema=schema, partition_spec=specs[e.data_file.spec_id])
        previous = self._state.snapshot.summary if self._state.snapshot is not None else None
        # update_snapshot_summaries only knows append/overwrite/delete; the totals rule is the same.
        totals = update_snapshot_summaries(
            Summary(operation=Operation.OVERWRITE, **ssc.build(), **self._snapshot_properties),
            previous_summary=previous,
        )
        props = {k: v for k, v in totals.model_dump().items() if k != "operation"}
        return Summary(operation=Operation.REPLACE, **props)

    def build(self) -> tuple[tuple[TableUpdate, ...], tuple[TableRequirement, ...]]:
        """Write manifests and the manifest list; return the catalog updates and requirements."""
        from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
        from pyiceberg.table.update import (
            AddSnapshotUpdate,
            AssertRefSnapshotId,
            AssertTableUUID,
            SetSnapshotRefUpdate,
        )

        manifests = self._manifests()
        sequence_number = self._metadata.next_sequence_number()
        summary = self._summary()
        output = self._new_output(f"snap-{self.snapshot_id}-0-{self.commit_uuid}.avro")
        with write_manifest_list(
            format_version=self._metadata.format_version,
            output_file=output,
            snapshot_id=self.snapshot_id,
            parent_snapshot_id=self._parent_snapshot_id,
            sequence_number=sequence_number,
            avro_compression=self._compression,
        ) as writer:
            writer.add_manifests(manifests)
        snapshot = Snapshot.model_validate(
            {
                "snapshot-id": self.snapshot_id,
                "parent-snapshot-id": self._parent_snapshot_id,
                "manifest-list": output.location,
                "sequence-number": sequence_number,
                "summary": summary,
                "schema-id": self._metadata.current_schema_id,
            }
        )
        updates: tuple[TableUpdate, ...] = (
            AddSnapshotUpdate(snapshot=snapshot),
            SetSnapshotRefUpdate.model_validate(
                {"snapshot-id": self.snapshot_id, "ref-name": MAIN_BRANCH, "type": SnapshotRefType.BRANCH}
            ),
        )
        requirements: tuple[TableRequirement, ...] = (
            AssertTableUUID(uuid=self._metadata.table_uuid),
            AssertRefSnapshotId.model_validate({"ref": MAIN_BRANCH, "snapshot-id": self._parent_snapshot_id}),
        )
        return updates, requirements

    def clean_uncommitted(self) -> None:
        """Delete the manifests and the manifest list this producer wrote (best effort)."""
        for path in self._written:
            try:
                self._io.delete(path)
            except FileNotFoundError:
                pass
            except Exception:  # orphan cleaning catches the rest
                logger.warning("could not delete uncommitted metadata file %s", path, exc_info=True)
        self._written.clear()


#: Iceberg's manifest merge properties and defaults (``TableProperties.MANIFEST_*`` in Java).
MANIFEST_TARGET_SIZE_BYTES = "commit.manifest.target-size-bytes"
MANIFEST_TARGET_SIZE_BYTES_DEFAULT = 8 * 1024 * 1024
MANIFEST_MIN_MERGE_COUNT = "commit.manifest.min-count-to-merge"
MANIFEST_MIN_MERGE_COUNT_DEFAULT = 100
MANIFEST_MERGE_ENABLED = "commit.manifest-merge.enabled"


def _int_property(properties: dict[str, str], key: str, default: int, minimum: int) -> int:
    raw = properties.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidPropertyError(key, raw, "not an integer") from None
    if value < minimum:
        raise InvalidPropertyError(key, raw, f"must be >= {minimum}")
    return value


def _merge_plan(
    manifests: list[tuple[ManifestFile, list[ManifestEntry]]], properties: dict[str, str]
) -> list[list[tuple[ManifestFile, list[ManifestEntry]]]]:
    """Group reused manifests for merging, as Iceberg's ``MergingSnapshotProducer`` does.

    Per (content, partition spec), when at least ``commit.manifest.min-count-to-merge`` manifests
    are smaller than ``commit.manifest.target-size-bytes``, the small ones are packed in order into
    bins of up to the target size; each bin of two or more manifests becomes one manifest of
    EXISTING entries. ``commit.manifest-merge.enabled=false`` turns merging off. Returns the
    groups in order; a group of one manifest is reused as it is.
    """
    enabled = str(properties.get(MANIFEST_MERGE_ENABLED, "true")).strip().lower() != "false"
    target = _int_property(properties, MANIFEST_TARGET_SIZE_BYTES, MANIFEST_TARGET_SIZE_BYTES_DEFAULT, 1)
    min_count = _int_property(properties, MANIFEST_MIN_MERGE_COUNT, MANIFEST_MIN_MERGE_COUNT_DEFAULT, 0)
    if not enabled:
        return [[m] for m in manifests]
    by_kind: dict[tuple[int, int], list[tuple[ManifestFile, list[ManifestEntry]]]] = defaultdict(list)
    for item in manifests:
        by_kind[(int(item[0].content), int(item[0].partition_spec_id))].append(item)
    out: list[list[tuple[ManifestFile, list[ManifestEntry]]]] = []
    for items in by_kind.values():
        small = [m for m in items if int(m[0].manifest_length) < target]
        if len(small) < max(2, min_count):
            out.extend([m] for m in items)
            continue
        out.extend([m] for m in items if int(m[0].manifest_length) >= target)
        bin_: list[tuple[ManifestFile, list[ManifestEntry]]] = []
        size = 0
        for m in small:
            length = int(m[0].manifest_length)
            if bin_ and size + length > target:
                out.append(bin_)
                bin_, size = [], 0
            bin_.append(m)
            size += length
        if bin_:
            out.append(bin_)
    return out


# --------------------------------------------------------------------------------------------------
# The commit loop shared by commit() and replace_files()
# --------------------------------------------------------------------------------------------------

Prepare = Callable[[HeadState], set[str]]
"""Validates the head state and returns the paths to remove (raises :class:`CommitValidationError`)."""


def _backoff(attempt: int) -> None:
    wait = min(0.1 * (2**attempt), 2.0)
    time.sleep(wait + random.uniform(0, wait / 10))


def _commit_with_retries(
    table: Table,
    *,
    prepare: Prepare,
    add_files: Sequence[DataFile],
    sequence_number: int | None,
    summary: dict[str, str],
    max_retries: int,
    progress: _Progress | None = None,
) -> CommitResult:
    progress = progress if progress is not None else _Progress()
    started = time.monotonic()
    attempt = 0
    _merge_plan([], table.metadata.properties)  # a bad merge property fails before any write
    while True:
        table.refresh()
        # Only the head is read again on a retry: the manifests come from the process-wide cache.
        state = HeadState.load(table.metadata, table.io)
        remove = prepare(state)
        if not remove and not add_files:
            return CommitResult(snapshot_id=None, attempts=attempt, duration_s=time.monotonic() - started)
        producer = _ReplaceFiles(table, state, remove, add_files, sequence_number, summary)
        try:
            updates, requirements = producer.build()
        except BaseException:
            producer.clean_uncommitted()
            raise
        progress.uncertain = True  # from here until the catalog answers, the outcome is unknown
        try:
            commit_updates(table, updates, requirements)
        except CommitFailedException as exc:
            progress.uncertain = False
            producer.clean_uncommitted()
            if attempt >= max_retries:
                raise
            logger.warning("commit conflict (attempt %d/%d): %s; retrying", attempt + 1, max_retries + 1, exc)
            _backoff(attempt)
            attempt += 1
            continue
        except CommitStateUnknownException:
            raise
        except Exception:
            # The catalog may or may not have applied the commit: look before cleaning anything.
            if _landed(table, producer.snapshot_id):
                logger.warning("commit raised but snapshot %s is in the table", producer.snapshot_id)
            else:
                progress.uncertain = False
                producer.clean_uncommitted()
                raise
        progress.uncertain = False
        return _result(producer, sequence_number, attempt + 1, time.monotonic() - started, table)


@dataclass
class _Progress:
    """Whether a catalog commit call is under way (its outcome unknown if interrupted there)."""

    uncertain: bool = False


def _landed(table: Table, snapshot_id: int) -> bool:
    try:
        table.refresh()
    except Exception as exc:  # outcome unknown: keep every file
        raise CommitStateUnknownException(
            f"cannot tell whether snapshot {snapshot_id} landed: {exc}"
        ) from exc
    return table.metadata.snapshot_by_id(snapshot_id) is not None


def _result(
    producer: _ReplaceFiles, sequence_number: int | None, attempts: int, duration: float, table: Table
) -> CommitResult:
    snap = table.metadata.snapshot_by_id(producer.snapshot_id)
    res = CommitResult(
        snapshot_id=producer.snapshot_id,
        sequence_number=sequence_number if table.metadata.format_version >= 2 else None,
        attempts=attempts,
        duration_s=duration,
        summary=dict(snap.summary.model_dump()) if snap is not None and snap.summary is not None else {},
    )
    for df in producer.added_files:
        if df.content == DataFileContent.DATA:
            res.added_data_files += 1
            res.added_data_bytes += int(df.file_size_in_bytes)
            res.added_records += int(df.record_count)
        else:
            res.added_delete_files += 1
            res.added_delete_bytes += int(df.file_size_in_bytes)
    for e in producer.removed_entries:
        df = e.data_file
        if df.content == DataFileContent.DATA:
            res.removed_data_files += 1
            res.removed_data_bytes += int(df.file_size_in_bytes)
            res.removed_records += int(df.record_count)
        else:
            res.removed_delete_files += 1
            res.removed_delete_bytes += int(df.file_size_in_bytes)
    return res


def _as_path(f: str | FileRef | DataFile) -> str:
    if isinstance(f, str):
        return f
    if isinstance(f, FileRef):
        return f.path
    return str(f.file_path)


def replace_files(
    table: Table,
    *,
    remove_data: Iterable[str | FileRef | DataFile] = (),
    remove_deletes: Iterable[str | FileRef | DataFile] = (),
    add_data: Sequence[DataFile] = (),
    add_deletes: Sequence[DataFile] = (),
    sequence_number: int | None = None,
    base_snapshot_id: int | None = None,
    summary: dict[str, str] | None = None,
    validate: Callable[[HeadState], None] | None = None,
    max_retries: int = 4,
) -> CommitResult:
    """Commit one REPLACE snapshot that removes and adds files, retrying on catalog conflicts.

    The caller guarantees the replacement does not change the table's rows (compaction, dropping
    dangling delete files). Every file to remove must be live in the current snapshot, else
    :class:`CommitValidationError` is raised. Added files get ``sequence_number`` as their data sequence
    number (None: this snapshot's own sequence number; ignored on v1 tables).

    Args:
        table: the table; refreshed before each attempt and updated to the new metadata.
        remove_data: data files to remove (paths, FileRefs or DataFiles).
        remove_deletes: delete files to remove.
        add_data: data files to add.
        add_deletes: delete files to add (v2 only).
        sequence_number: data sequence number for the added files.
        base_snapshot_id: when given, it must still be an ancestor of the head.
        summary: extra snapshot summary properties (``snapshot-producer`` defaults to ``OPTIMIZE``).
        validate: extra validation of the head state, run on every attempt.
        max_retries: retries after catalog commit conflicts.

    Returns:
        What was committed. Nothing is deleted on failure: the caller owns the added files.

    Raises:
        CommitValidationError: a file to remove is not live, or ``validate`` failed.
        CommitFailedException: still conflicting after ``max_retries`` retries.
    """
    data_paths = {_as_path(f) for f in remove_data}
    delete_paths = {_as_path(f) for f in remove_deletes}

    def prepare(state: HeadState) -> set[str]:
        if base_snapshot_id is not None:
            state.snapshots_since(base_snapshot_id)
        _require_live(state, data_paths, want_data=True)
        _require_live(state, delete_paths, want_data=False)
        if validate is not None:
            validate(state)
        return data_paths | delete_paths

    return _commit_with_retries(
        table,
        prepare=prepare,
        add_files=[*add_data, *add_deletes],
        sequence_number=sequence_number,
        summary={SNAPSHOT_PRODUCER: PRODUCER_OPTIMIZE, **(summary or {})},
        max_retries=max_retries,
    )


def _require_live(state: HeadState, paths: Iterable[str], *, want_data: bool) -> None:
    for path in sorted(paths):
        entry = state.live.get(path)
        if entry is None:
            raise CommitValidationError(f"cannot remove {path}: it is no longer live (removed concurrently)")
        is_data = entry.data_file.content == DataFileContent.DATA
        if is_data != want_data:
            raise CommitValidationError(
                f"cannot remove {path}: it is a {content_name(entry.data_file.content)} file"
            )


# --------------------------------------------------------------------------------------------------
# commit(plan, results)
# --------------------------------------------------------------------------------------------------


@dataclass
class _PlanFiles:
    """The parts of a plan that the commit needs, restricted to tasks that have results."""

    rewrite: dict[str, int]  # rewritten data file path -> task id
    deletes_of_task: dict[int, set[str]]  # task id -> delete file paths read by the task
    candidates: set[str]  # delete files that may become dangling
    covered: dict[str, set[str]]  # delete path -> rewrite-pos data paths it was merged for
    moved: dict[int, list[FileRef]] = field(default_factory=dict)  # task id -> outputs in another partition


def _plan_files(plan: OptimizingPlan, results: Sequence[TaskResult]) -> _PlanFiles:
    done = {r.task_id: r for r in results}
    pf = _PlanFiles(rewrite={}, deletes_of_task={}, candidates=set(), covered=defaultdict(set))
    for task in plan.tasks:
        if task.task_id not in done:
            continue
        outs = [
            FileRef(
                path=o["file_path"],
                content="data",
                size_bytes=int(o["file_size_in_bytes"]),
                record_count=int(o["record_count"]),
                spec_id=int(o["spec_id"]),
                partition=list(o["partition"]),
                data_sequence_number=int(plan.base_sequence_number or 0),
            )
            for o in done[task.task_id].outputs
            if o["content"] == "data"
        ]
        if any((o.spec_id, o.partition) != (task.spec_id, task.partition) for o in outs):
            pf.moved[task.task_id] = outs
        deletes = {d.path for d in task.delete_files}
        pf.deletes_of_task[task.task_id] = deletes
        pf.candidates |= deletes
        for f in task.rewrite_data_files:
            pf.rewrite[f.path] = task.task_id
        for d in deletes:
            pf.covered[d] |= {f.path for f in task.rewrite_pos_data_files}
    return pf


def _validate_and_choose(
    state: HeadState, plan: OptimizingPlan, pf: _PlanFiles, pos_index: _PosDeleteIndex
) -> set[str]:
    """Validate the head against the plan; return the data and delete paths to remove."""
    concurrent = {s.snapshot_id for s in state.snapshots_since(plan.base_snapshot_id)}
    rewritten: dict[str, FileRef] = {}
    for path in sorted(pf.rewrite):
        entry = state.live.get(path)
        if entry is None:
            raise CommitValidationError(
                f"data file {path} was removed by a concurrent commit after snapshot "
                f"{plan.base_snapshot_id}; nothing committed, the table will be planned again"
            )
        if entry.data_file.content != DataFileContent.DATA:
            raise CommitValidationError(f"{path} is not a data file")
        rewritten[path] = _ref_of(entry)

    live_deletes = [(p, e) for p, e in state.live.items() if e.data_file.content != DataFileContent.DATA]
    by_partition: dict[str, list[FileRef]] = defaultdict(list)
    if live_deletes:  # an append-only table has none: nothing to group
        for ref in rewritten.values():
            by_partition[_partition_key(ref)].append(ref)

    for dpath, entry in live_deletes:
        df = entry.data_file
        dref = _ref_of(entry)
        targets = (
            list(rewritten.values()) if not dref.partition else by_partition.get(_partition_key(dref), [])
        )
        for data in targets:
            if not delete_applies(dref, data):
                continue
            is_pos = df.content == DataFileContent.POSITION_DELETES
            if is_pos and not pos_index.references(df, data.path):
                continue
            if entry.snapshot_id in concurrent:
                if is_pos:
                    raise CommitValidationError(
                        f"a concurrent commit (snapshot {entry.snapshot_id}) added position deletes {dpath} "
                        f"for the rewritten data file {data.path}; nothing committed, plan again"
                    )
                if (
                    plan.base_sequence_number is not None
                    and dref.data_sequence_number <= plan.base_sequence_number
                ):
                    # it applies to the inputs only through their older sequence numbers; the outputs
                    # carry the base's, so it would stop applying and its rows would come back
                    raise CommitValidationError(
                        f"a concurrent commit (snapshot {entry.snapshot_id}) added the equality delete "
                        f"{dpath} with data sequence number {dref.data_sequence_number}, not above the "
                        f"plan's base {plan.base_sequence_number}; it would not apply to the rewritten "
                        "rows; nothing committed, plan again"
                    )
                continue  # concurrent equality deletes keep applying: outputs carry the base sequence number
            if dpath not in pf.deletes_of_task.get(pf.rewrite[data.path], set()):
                raise CommitValidationError(
                    f"delete file {dpath} applies to the rewritten data file {data.path} but was not read "
                    "by its task (plan is incomplete); nothing committed"
                )

    _check_moved_rows(state, concurrent, plan, pf, rewritten)

    remove = set(rewritten)
    if not pf.candidates:
        return remove  # no delete file that the rewrite could leave dangling
    remaining: dict[str, FileRef] = {}
    remaining_by_partition: dict[str, list[FileRef]] = defaultdict(list)
    for path, entry in state.live.items():
        if entry.data_file.content == DataFileContent.DATA and path not in remove:
            ref = _ref_of(entry)
            remaining[path] = ref
            remaining_by_partition[_partition_key(ref)].append(ref)

    for dpath in sorted(pf.candidates):
        entry = state.live.get(dpath)
        if entry is None or entry.data_file.content == DataFileContent.DATA:
            continue  # already gone: nothing to remove
        dref = _ref_of(entry)
        covered = pf.covered.get(dpath, set())
        if entry.data_file.content == DataFileContent.POSITION_DELETES:
            still = any(
                p in remaining and p not in covered and delete_applies(dref, remaining[p])
                for p in pos_index.referenced(entry.data_file)
            )
        else:
            pool = (
                remaining.values()
                if not dref.partition
                else remaining_by_partition.get(_partition_key(dref), [])
            )
            still = any(r.path not in covered and delete_applies(dref, r) for r in pool)
        if not still:
            remove.add(dpath)
    return remove


def _check_moved_rows(
    state: HeadState,
    concurrent: set[int],
    plan: OptimizingPlan,
    pf: _PlanFiles,
    rewritten: dict[str, FileRef],
) -> None:
    """Rows moved to another spec or partition must meet the same concurrent equality deletes.

    Within one partition a concurrent equality delete applies to the outputs exactly when it applied
    to the inputs (the outputs keep the base sequence number). A task planned on an older spec writes
    its rows in the current spec; there an equality delete committed meanwhile could stop applying
    (rows resurrected) or start applying (rows lost), so the commit fails instead.
    """
    if not pf.moved:
        return
    concurrent_eq = [
        _ref_of(e)
        for e in state.live.values()
        if e.snapshot_id in concurrent and e.data_file.content == DataFileContent.EQUALITY_DELETES
    ]
    if not concurrent_eq:
        return
    for task in plan.tasks:
        outs = pf.moved.get(task.task_id)
        if outs is None:
            continue
        inputs = [rewritten[f.path] for f in task.rewrite_data_files if f.path in rewritten]
        for d in concurrent_eq:
            on_inputs = {delete_applies(d, f) for f in inputs}
            on_outputs = {delete_applies(d, o) for o in outs}
            if len(on_inputs | on_outputs) > 1:
                raise CommitValidationError(
                    f"task {task.task_id} moved rows to another partition spec while the equality delete "
                    f"{d.path} was committed concurrently; it would not apply to the same rows; plan again"
                )


def output_paths(results: Sequence[TaskResult]) -> list[str]:
    """Every output file location of ``results``."""
    return [str(o["file_path"]) for r in results for o in r.outputs]


def delete_task_outputs(
    table: Table, results: Sequence[TaskResult], *, min_sequence_number: int | None = None
) -> CleanupResult:
    """Delete the output files of ``results`` that no retained snapshot references (never raises).

    Missing files are fine; a file some snapshot references (the commit landed after all) is kept,
    and when the references cannot be read every file is kept (see :func:`~.cleanup.delete_unreferenced`).

    Args:
        table: the table.
        results: task results whose outputs are candidates.
        min_sequence_number: the plan's base sequence number (limits the manifests read).
    """
    return delete_unreferenced(
        table, output_paths(results), min_sequence_number=min_sequence_number, what="task outputs"
    )


class _Landed(Exception):
    """The plan has already been committed (found by process id or by its outputs being live)."""

    def __init__(self, snapshot_id: int | None) -> None:
        super().__init__(snapshot_id)
        self.snapshot_id = snapshot_id


def _raise_if_landed(
    metadata: TableMetadata,
    live: Mapping[str, ManifestEntry] | None,
    plan: OptimizingPlan,
    outputs: Iterable[str],
) -> None:
    landed = snapshot_of_process(metadata, plan.plan_id)
    if landed is not None:
        raise _Landed(landed)
    if live is None:
        return
    for path in outputs:
        entry = live.get(path)
        if entry is not None:
            # the landed snapshot was expired, but the outputs are live: the plan committed
            raise _Landed(int(entry.snapshot_id) if entry.snapshot_id is not None else None)


_SUMMARY_COUNTS = {
    "added_data_files": "added-data-files",
    "removed_data_files": "deleted-data-files",
    "added_delete_files": "added-delete-files",
    "removed_delete_files": "removed-delete-files",
    "added_records": "added-records",
    "removed_records": "deleted-records",
}


def _landed_result(
    table: Table, plan: OptimizingPlan, snapshot_id: int | None, started: float
) -> CommitResult:
    snap = table.metadata.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
    summary = dict(snap.summary.model_dump()) if snap is not None and snap.summary is not None else {}
    res = CommitResult(
        snapshot_id=snapshot_id,
        sequence_number=plan.base_sequence_number if table.metadata.format_version >= 2 else None,
        duration_s=time.monotonic() - started,
        summary=summary,
        already_committed=True,
    )
    for attr, key in _SUMMARY_COUNTS.items():
        if summary.get(key, "").isdigit():
            setattr(res, attr, int(summary[key]))
    logger.warning(
        "%s: plan %s was already committed as snapshot %s (repeated commit); nothing new committed",
        plan.table,
        plan.plan_id,
        snapshot_id,
    )
    return res


def _check_outputs(table: Table, files: Sequence[DataFile]) -> None:
    for df in files:
        inp = table.io.new_input(df.file_path)
        if not inp.exists():
            raise CommitValidationError(f"output file {df.file_path} does not exist")
        size = len(inp)
        if size != int(df.file_size_in_bytes):
            raise CommitValidationError(
                f"output file {df.file_path} has {size} bytes, the task reported {df.file_size_in_bytes}"
            )


def task_totals(results: Sequence[TaskResult]) -> dict[str, int]:
    """Sums over task results: tasks, input files/bytes/records, output files/bytes/records."""
    return {"tasks": len(results), **IOCounters.of_results(results).counters_dict()}


def plan_summary(plan: OptimizingPlan, results: Sequence[TaskResult]) -> dict[str, str]:
    """The optimizing metrics written into the snapshot summary (keys under ``optimizing.``)."""
    out = {
        SNAPSHOT_PRODUCER: PRODUCER_OPTIMIZE,
        f"{SUMMARY_PREFIX}kind": str(plan.kind),
        f"{SUMMARY_PREFIX}base-snapshot-id": str(plan.base_snapshot_id),
        PROCESS_ID_KEY: plan.plan_id,
    }
    for key, value in task_totals(results).items():
        out[SUMMARY_PREFIX + key.replace("_", "-")] = str(value)
    return out


def commit(
    table: Table,
    plan: OptimizingPlan,
    results: list[TaskResult],
    *,
    max_retries: int = 4,
) -> CommitResult:
    """Commit the results of an optimizing process as one REPLACE snapshot.

    Args:
        table: the table the plan was made for (refreshed, then updated to the new metadata).
        plan: the plan; ``base_snapshot_id`` / ``base_sequence_number`` drive validation and the
            data sequence number of the added files.
        results: one result per executed task. Tasks without a result are not committed; unless
            the plan's ``self-optimizing.allow-partial-commit`` is ``true``, a missing result fails
            the commit.
        max_retries: retries after catalog commit conflicts.

    Returns:
        What was committed; when the plan had already landed (found by its ``amoro.process-id`` in a
        retained snapshot, or by its outputs live at the head), that commit with
        ``already_committed=True``, and outputs of ``results`` that nothing references are deleted.

    Raises:
        CommitValidationError: the table changed in a way that makes the rewrite unsafe, or the results
            do not match the plan. Nothing was committed; the outputs that no retained snapshot
            references were deleted.
        CommitFailedException: still conflicting after ``max_retries`` retries (outputs deleted
            the same way).
        CommitStateUnknownException: the catalog may or may not have applied the snapshot; every
            output is kept (find out later with :func:`~.cleanup.snapshot_of_process`).
    """
    progress = _Progress()
    started = time.monotonic()
    try:
        return _commit(table, plan, results, max_retries, progress)
    except _Landed as landed:
        delete_task_outputs(table, results, min_sequence_number=plan.base_sequence_number)
        return _landed_result(table, plan, landed.snapshot_id, started)
    except CommitStateUnknownException:
        logger.error("commit outcome unknown for %s; keeping output files", plan.table)
        raise
    except Exception:
        if progress.uncertain:
            logger.error("commit of %s failed during the catalog call; keeping output files", plan.table)
        else:
            delete_task_outputs(table, results, min_sequence_number=plan.base_sequence_number)
        raise
    except BaseException:
        # Interrupted (task timeout, the worker being stopped): whether the catalog call ran is
        # not known here, so every output is kept; the caller resolves the process by its plan id.
        logger.error("commit of %s interrupted; keeping output files", plan.table)
        raise


def _commit(
    table: Table, plan: OptimizingPlan, results: list[TaskResult], max_retries: int, progress: _Progress
) -> CommitResult:
    outputs = output_paths(results)
    table.refresh()
    _raise_if_landed(table.metadata, None, plan, outputs)
    task_ids = {t.task_id for t in plan.tasks}
    seen: set[int] = set()
    for r in results:
        if r.task_id not in task_ids:
            raise CommitValidationError(f"result for unknown task {r.task_id}")
        if r.task_id in seen:
            raise CommitValidationError(f"two results for task {r.task_id}")
        seen.add(r.task_id)
    missing = sorted(task_ids - seen)
    partial = plan.properties.get(ALLOW_PARTIAL_COMMIT, "false").lower() == "true"
    if missing and not partial:
        raise CommitValidationError(
            f"tasks without results: {missing} (self-optimizing.allow-partial-commit=false)"
        )
    fmt = int(table.metadata.format_version)
    if fmt > 2:
        raise CommitValidationError(
            f"format v{fmt} tables are not supported yet (pyiceberg 0.12 writes v1/v2 manifests)"
        )
    # Always the v2 layout: pyiceberg's DataFile positions follow it; v1 manifest writers project it.
    add_files = [datafile_from_dict(o) for r in results for o in r.outputs]
    for r in results:
        written = sum(int(o["record_count"]) for o in r.outputs if o["content"] == "data")
        if written != r.output_records:
            raise CommitValidationError(
                f"task {r.task_id}: output data files hold {written} records, "
                f"the task reported {r.output_records}"
            )
        if r.output_records != r.input_records:
            raise CommitValidationError(
                f"task {r.task_id}: read {r.input_records} live records but wrote {r.output_records}; "
                "a rewrite must keep every row"
            )
    if fmt < 2 and any(df.content != DataFileContent.DATA for df in add_files):
        raise CommitValidationError("a format v1 table cannot take delete files")
    _check_outputs(table, add_files)
    pf = _plan_files(plan, results)
    pos_index = _PosDeleteIndex(table.io)

    def prepare(state: HeadState) -> set[str]:
        _raise_if_landed(state.metadata, state.live, plan, outputs)
        return _validate_and_choose(state, plan, pf, pos_index)

    sequence_number = plan.base_sequence_number if fmt >= 2 else None
    if fmt >= 2 and sequence_number is None and (pf.rewrite or add_files):
        raise CommitValidationError("the plan has no base sequence number")
    result = _commit_with_retries(
        table,
        prepare=prepare,
        add_files=add_files,
        sequence_number=sequence_number,
        summary=plan_summary(plan, results),
        max_retries=max_retries,
        progress=progress,
    )
    logger.info(
        "committed %s optimizing of %s as snapshot %s: -%d/+%d data files, -%d/+%d delete files "
        "(%d attempts)",
        plan.kind,
        plan.table,
        result.snapshot_id,
        result.removed_data_files,
        result.added_data_files,
        result.removed_delete_files,
        result.added_delete_files,
        result.attempts,
    )
    return result
