"""Snapshot expiry that also deletes the files no kept snapshot reaches (pyiceberg deletes none).

Which snapshots are kept (the union of these rules; everything else expires):

- every branch head and every tag's snapshot; a tag or a non-main branch whose snapshot is older
  than its ``max-ref-age-ms`` is removed first (``main`` never is);
- on each branch, its ancestors while fewer than ``min-snapshots-to-keep`` are kept or while they
  are newer than ``max-snapshot-age-ms`` (a branch without these fields uses the table's
  ``snapshot.keep.min-count`` and ``snapshot.keep.duration``);
- snapshots on no branch (e.g. left by a rollback) newer than ``snapshot.keep.duration``;
- the base snapshot of a running optimizing process (``protected_snapshot_id``), and, as Amoro
  does, the latest snapshot carrying a Flink checkpoint (``flink.max-committed-checkpoint-id``:
  a Flink job restores from it) and the latest snapshot of ``main`` that is not an Amoro
  maintenance commit (``snapshot-producer`` OPTIMIZE, DATA_EXPIRATION, CLEAN_DANGLING_DELETE: data
  expiry measures from it); each of these and every snapshot at least as new as it.

The expiry is committed first (one metadata commit that asserts every ref is where it was when the
plan was made; on a concurrent change the plan is made again). Only after the commit succeeds are
files deleted, and only those that no snapshot of the **committed** metadata reaches as live:

- candidates: manifest lists of expired snapshots, their manifests that no kept snapshot lists,
  and every content file (all entry statuses) of those manifests, plus statistics files the
  commit dropped;
- a candidate content file survives when any manifest of a kept snapshot has it ADDED or EXISTING.

Metadata JSON files: with ``write.metadata.delete-after-commit.enabled=true``, pyiceberg deletes at
each commit the files that leave the metadata log (which keeps ``write.metadata.previous-versions-max``
entries); expiry then also deletes any ``NNNNN-*.metadata.json`` file of the table's ``metadata/``
folder left behind with a version lower than every file in the log (another engine's commit, a
failed delete). Only lower versions: a writer about to swap in a new metadata file always writes a
higher version, so it is never touched. Without the property, orphan cleaning removes metadata
files that left the log.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
from pyiceberg.table.update import (
    AssertRefSnapshotId,
    RemoveSnapshotRefUpdate,
    RemoveSnapshotsUpdate,
    TableUpdate,
)

from airflow_provider_amoro.iceberg_compat import apply_updates
from airflow_provider_amoro.maintenance.config import MaintenanceConfig
from airflow_provider_amoro.maintenance.reach import iter_entries, manifests_of
from airflow_provider_amoro.maintenance.results import ExpireResult, to_epoch_ms
from airflow_provider_amoro.maintenance.storage import (
    ListedFile,
    delete_files,
    file_size,
    list_files,
    normalize_location,
)
from airflow_provider_amoro.properties import AMORO_MAINTAIN_COMMITS, FLINK_MAX_COMMITTED_CHECKPOINT_ID

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping

    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.snapshots import Snapshot

__all__ = ["ExpiryPlan", "expire_snapshots", "latest_non_maintenance", "plan_expiry"]

logger = logging.getLogger(__name__)
COMMIT_ATTEMPTS = 5
SAMPLE = 20


class ExpiryPlan:
    """Snapshots to expire and refs to remove, decided from one metadata version.

    Attributes:
        expire_ids: snapshot ids to remove.
        removed_refs: ref names to remove (past ``max-ref-age-ms``).
        skip_reason: set when nothing may be expired at all.
    """

    def __init__(self, expire_ids: set[int], removed_refs: list[str], skip_reason: str | None = None) -> None:
        self.expire_ids = expire_ids
        self.removed_refs = removed_refs
        self.skip_reason = skip_reason


def plan_expiry(
    metadata: TableMetadata,
    *,
    now_ms: int,
    min_count: int,
    keep_duration_ms: int,
    protected_snapshot_id: int | None = None,
) -> ExpiryPlan:
    """Decide which snapshots expire (see the module docs for the rules).

    Args:
        metadata: the table metadata.
        now_ms: the current time, epoch ms.
        min_count: snapshots to keep on each branch at least (``snapshot.keep.min-count``).
        keep_duration_ms: age below which snapshots are kept (``snapshot.keep.duration``).
        protected_snapshot_id: the base snapshot of a running optimizing process.

    Returns:
        The plan.
    """
    by_id = {s.snapshot_id: s for s in metadata.snapshots}
    if protected_snapshot_id is not None and protected_snapshot_id not in by_id:
        return ExpiryPlan(
            set(),
            [],
            f"protected snapshot {protected_snapshot_id} (base of a running optimizing process) "
            "is not in the table",
        )
    retained: set[int] = set()
    removed_refs: list[str] = []
    on_branches: set[int] = set()
    for name, ref in metadata.refs.items():
        head = by_id.get(ref.snapshot_id)
        if head is None:
            continue
        if (
            name != MAIN_BRANCH
            and ref.max_ref_age_ms is not None
            and now_ms - head.timestamp_ms > ref.max_ref_age_ms
        ):
            removed_refs.append(name)
            continue
        retained.add(head.snapshot_id)
        if ref.snapshot_ref_type != SnapshotRefType.BRANCH:
            continue
        keep = ref.min_snapshots_to_keep or min_count
        oldest = now_ms - (
            ref.max_snapshot_age_ms if ref.max_snapshot_age_ms is not None else keep_duration_ms
        )
        kept = 0
        current: Snapshot | None = head
        retaining = True
        while current is not None:
            on_branches.add(current.snapshot_id)
            if retaining and (kept < keep or current.timestamp_ms >= oldest):
                retained.add(current.snapshot_id)
                kept += 1
            else:
                retaining = False
            parent = current.parent_snapshot_id
            current = by_id.get(parent) if parent is not None else None
    for snapshot in metadata.snapshots:
        if snapshot.snapshot_id not in on_branches and snapshot.timestamp_ms >= now_ms - keep_duration_ms:
            retained.add(snapshot.snapshot_id)
    floors = [s for s in (_latest_flink_commit(metadata), latest_non_maintenance(metadata)) if s is not None]
    if protected_snapshot_id is not None:
        floors.append(by_id[protected_snapshot_id])
    for floor in floors:
        retained.add(floor.snapshot_id)
        retained.update(s.snapshot_id for s in metadata.snapshots if s.timestamp_ms >= floor.timestamp_ms)
    return ExpiryPlan(set(by_id) - retained, removed_refs)


def _latest_flink_commit(metadata: TableMetadata) -> Snapshot | None:
    """The latest snapshot whose summary carries a Flink checkpoint id (Amoro keeps it)."""
    found: Snapshot | None = None
    for snapshot in metadata.snapshots:
        summary = snapshot.summary
        flink = summary is not None and FLINK_MAX_COMMITTED_CHECKPOINT_ID in summary.additional_properties
        if flink and (found is None or snapshot.timestamp_ms >= found.timestamp_ms):
            found = snapshot
    return found


def latest_non_maintenance(metadata: TableMetadata) -> Snapshot | None:
    """The newest snapshot of ``main``'s history that is not an Amoro optimizing/maintenance commit."""
    snapshot = metadata.current_snapshot()
    while snapshot is not None:
        summary = snapshot.summary
        values = set(summary.additional_properties.values()) if summary is not None else set()
        if not values & AMORO_MAINTAIN_COMMITS:
            return snapshot
        parent = snapshot.parent_snapshot_id
        snapshot = metadata.snapshot_by_id(parent) if parent is not None else None
    return None


class ExpiryConflictError(CommitFailedException):
    """Every attempt to commit an expiry met a concurrent change of the table (nothing deleted)."""


def _commit_expiry(table: Table, plan: ExpiryPlan) -> None:
    updates: list[TableUpdate] = [
        RemoveSnapshotRefUpdate.model_validate({"ref-name": name}) for name in plan.removed_refs
    ]
    updates.append(RemoveSnapshotsUpdate.model_validate({"snapshot-ids": sorted(plan.expire_ids)}))
    requirements = tuple(
        AssertRefSnapshotId.model_validate({"ref": name, "snapshot-id": ref.snapshot_id})
        for name, ref in table.metadata.refs.items()
    )
    tx = table.transaction()
    # pyiceberg's public ExpireSnapshots builder cannot assert the refs; the updates are the same.
    try:
        apply_updates(tx, tuple(updates), requirements)
        tx.commit_transaction()
    except ValueError as exc:
        # pyiceberg applies the removal to the catalog's current metadata; when another expiry
        # removed some of these snapshots first, it raises a ValueError listing every snapshot.
        if "does not exist" not in str(exc) or "snapshot" not in str(exc).lower():
            raise
        gone = sorted(plan.expire_ids - {s.snapshot_id for s in table.refresh().metadata.snapshots})
        raise CommitFailedException(
            f"{len(gone)} of the {len(plan.expire_ids)} snapshots to expire were removed concurrently "
            f"(another expire_snapshots?), e.g. {gone[:3]}"
        ) from None


def _unreachable(
    table: Table,
    expired: Iterable[Snapshot],
    kept: list[Snapshot],
    log: logging.Logger,
) -> tuple[dict[str, tuple[str, int]], list[str]]:
    """Files reached by ``expired`` and not by ``kept``: ``{path: (kind, size)}`` and manifest lists."""
    io = table.io
    expired = list(expired)
    kept_lists = {s.manifest_list for s in kept}
    kept_manifests = manifests_of(io, kept, strict=True, log=log)
    expired_manifests = manifests_of(io, expired, strict=False, log=log)
    candidates: dict[str, tuple[str, int]] = {}
    only_expired = [m for path, m in expired_manifests.items() if path not in kept_manifests]
    for manifest in only_expired:
        candidates[manifest.manifest_path] = ("manifest", int(manifest.manifest_length))
    for content in iter_entries(io, only_expired, strict=False, log=log):
        candidates.setdefault(content.path, (content.content, content.size))
    log.info(
        "expiry: %d candidate files from %d expired-only manifests; checking %d kept manifests",
        len(candidates),
        len(only_expired),
        len(kept_manifests),
    )
    for content in iter_entries(
        io, kept_manifests.values(), strict=True, log=log, stop=lambda: not candidates
    ):
        if content.live:
            candidates.pop(content.path, None)
    lists = [s.manifest_list for s in expired if s.manifest_list not in kept_lists]
    return candidates, lists


_METADATA_FILE = re.compile(r"^(\d+)-[^/]*\.metadata\.json$")


def _metadata_version(location: str) -> int | None:
    match = _METADATA_FILE.match(location.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def old_metadata_files(table: Table, log: logging.Logger) -> list[ListedFile]:
    """Metadata JSON files of ``metadata/`` older than every file in the metadata log."""
    logged = [table.metadata_location, *(e.metadata_file for e in table.metadata.metadata_log)]
    versions = [v for v in (_metadata_version(p) for p in logged) if v is not None]
    if len(versions) != len(logged):
        return []  # an unknown naming scheme: leave metadata files to orphan cleaning
    keep = {normalize_location(p) for p in logged}
    oldest = min(versions)
    folder = normalize_location(table.location()) + "/metadata"
    out = []
    for item in list_files(table.io, folder, log):
        version = _metadata_version(item.location)
        if version is not None and version < oldest and item.location not in keep:
            out.append(item)
    return out


def _clean_old_metadata(table: Table, result: ExpireResult, dry_run: bool, log: logging.Logger) -> None:
    old = old_metadata_files(table, log)
    result.deleted_metadata_files = len(old)
    result.bytes_freed += sum(f.size for f in old)
    if old and not dry_run:
        _deleted, failed = delete_files(table.io, [f.location for f in old], log, what="metadata files")
        result.failed_deletes += failed


def expire_snapshots(
    table: Table,
    *,
    now: dt.datetime | int | None = None,
    keep_min_count: int | None = None,
    keep_duration_ms: int | None = None,
    protected_snapshot_id: int | None = None,
    dry_run: bool = False,
    log: logging.Logger | None = None,
    properties: Mapping[str, str] | None = None,
) -> ExpireResult:
    """Expire old snapshots, then delete every file that only expired snapshots reached.

    Args:
        table: the pyiceberg table (refreshed in place).
        now: the current time (datetime, naive = UTC, or epoch ms); the clock when None.
        keep_min_count: overrides ``snapshot.keep.min-count``.
        keep_duration_ms: overrides ``snapshot.keep.duration``.
        protected_snapshot_id: base snapshot of a running optimizing process: it and every newer
            snapshot are kept.
        dry_run: report what would expire and be deleted; commit and delete nothing.
        log: logger for progress (default: this module's).
        properties: property overrides applied over the table's own properties (e.g. from the DAG
            factory's configuration).

    Returns:
        An :class:`ExpireResult`; ``skipped`` with a reason when ``gc.enabled`` or
        ``table-expire.enabled`` is false.

    Raises:
        InvalidPropertyError: on a bad maintenance property value.
    """
    log = log or logger
    started = time.monotonic()
    result = ExpireResult(table=".".join(table.name()), dry_run=dry_run)
    config = MaintenanceConfig.for_table(table, properties)
    if not config.gc_enabled:
        return result.skip("gc.enabled=false")
    if not config.table_expire_enabled:
        return result.skip("table-expire.enabled=false")
    if keep_min_count is not None and keep_min_count < 1:
        raise ValueError(f"keep_min_count must be >= 1, got {keep_min_count}")
    min_count = keep_min_count if keep_min_count is not None else config.snapshot_keep_min_count
    duration = keep_duration_ms if keep_duration_ms is not None else config.snapshot_keep_duration_ms
    now_ms = to_epoch_ms(now)
    table.refresh()
    before, plan = _plan_and_commit(
        table,
        result.table,
        log,
        dry_run=dry_run,
        now_ms=now_ms,
        min_count=min_count,
        keep_duration_ms=duration,
        protected_snapshot_id=protected_snapshot_id,
    )
    if plan.skip_reason:
        return result.skip(plan.skip_reason)
    if not plan.expire_ids and not plan.removed_refs:
        result.kept_snapshots = len(before.snapshots)
        if config.metadata_delete_after_commit:
            _clean_old_metadata(table, result, dry_run, log)
        result.duration_s = time.monotonic() - started
        log.info("expiry of %s: nothing to expire", result.table)
        return result
    _delete_unreachable(table, before, plan, result, dry_run, log)
    if config.metadata_delete_after_commit:
        _clean_old_metadata(table, result, dry_run, log)
    result.duration_s = time.monotonic() - started
    log.info(
        "expiry of %s: %d snapshots expired, %d files (%d bytes) %s",
        result.table,
        len(result.expired_snapshot_ids),
        result.deleted_files,
        result.bytes_freed,
        "deletable (dry run)" if dry_run else "deleted",
    )
    return result


def _plan_and_commit(
    table: Table,
    name: str,
    log: logging.Logger,
    *,
    dry_run: bool,
    now_ms: int,
    min_count: int,
    keep_duration_ms: int,
    protected_snapshot_id: int | None,
) -> tuple[TableMetadata, ExpiryPlan]:
    """Plan the expiry and commit it, planning again after a concurrent commit.

    Returns the metadata the committed (or, with ``dry_run``, the reported) plan was made on, and
    that plan; a plan that skips or expires nothing is returned uncommitted.

    Raises:
        ExpiryConflictError: the table changed concurrently at every attempt.
    """
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        before = table.metadata
        plan = plan_expiry(
            before,
            now_ms=now_ms,
            min_count=min_count,
            keep_duration_ms=keep_duration_ms,
            protected_snapshot_id=protected_snapshot_id,
        )
        if plan.skip_reason or (not plan.expire_ids and not plan.removed_refs):
            return before, plan
        log.info(
            "expiry of %s: %d snapshots to expire, refs to remove: %s",
            name,
            len(plan.expire_ids),
            plan.removed_refs,
        )
        if dry_run:
            return before, plan
        try:
            _commit_expiry(table, plan)
            return before, plan
        except CommitFailedException as exc:
            if attempt == COMMIT_ATTEMPTS:
                raise ExpiryConflictError(
                    f"expire_snapshots of {name}: the table changed concurrently {attempt} times "
                    f"in a row while expiring ({exc}); nothing was deleted, the next run tries again"
                ) from None
            log.warning("expiry commit conflicted (%s); planning again (attempt %d)", exc, attempt + 1)
            table.refresh()
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _delete_unreachable(
    table: Table,
    before: TableMetadata,
    plan: ExpiryPlan,
    result: ExpireResult,
    dry_run: bool,
    log: logging.Logger,
) -> None:
    """Record what the expiry removed and delete the files only expired snapshots reached."""
    after = table.metadata
    if dry_run:
        kept = [s for s in before.snapshots if s.snapshot_id not in plan.expire_ids]
        gone_ids = set(plan.expire_ids)
    else:
        kept = list(after.snapshots)
        remaining = {s.snapshot_id for s in kept}
        gone_ids = {s.snapshot_id for s in before.snapshots} - remaining
    expired = [s for s in before.snapshots if s.snapshot_id in gone_ids]
    result.expired_snapshot_ids = sorted(gone_ids)
    result.removed_refs = list(plan.removed_refs)
    result.kept_snapshots = len(kept)

    files, lists = _unreachable(table, expired, kept, log)
    kept_stats = (
        {s.statistics_path for s in before.statistics if s.snapshot_id not in gone_ids}
        | {s.statistics_path for s in before.partition_statistics if s.snapshot_id not in gone_ids}
        if dry_run
        else {s.statistics_path for s in after.statistics}
        | {s.statistics_path for s in after.partition_statistics}
    )
    stats = {
        s.statistics_path: int(s.file_size_in_bytes)
        for s in [*before.statistics, *before.partition_statistics]
        if s.snapshot_id in gone_ids and s.statistics_path not in kept_stats
    }
    counts = {"data": 0, "position_deletes": 0, "equality_deletes": 0, "manifest": 0}
    for kind, _size in files.values():
        counts[kind] += 1
    result.deleted_data_files = counts["data"]
    result.deleted_delete_files = counts["position_deletes"] + counts["equality_deletes"]
    result.deleted_manifests = counts["manifest"]
    result.deleted_manifest_lists = len(lists)
    result.deleted_statistics_files = len(stats)
    list_sizes = {path: file_size(table.io, path) for path in lists}
    result.bytes_freed = (
        sum(size for _k, size in files.values()) + sum(list_sizes.values()) + sum(stats.values())
    )
    all_paths = [*files, *lists, *stats]
    result.deleted_paths_sample = sorted(all_paths)[:SAMPLE]
    if dry_run:
        return
    # content files first, then manifests, then manifest lists: a crash midway leaves only
    # unreferenced files behind (orphans), never a manifest naming a missing file that is kept.
    content = [p for p, (kind, _s) in files.items() if kind != "manifest"]
    manifests = [p for p, (kind, _s) in files.items() if kind == "manifest"]
    failed = 0
    for group, what in (
        (content, "content files"),
        (manifests, "manifests"),
        ([*lists, *stats], "lists"),
    ):
        _deleted, bad = delete_files(table.io, group, log, what=what)
        failed += bad
    result.failed_deletes = failed
