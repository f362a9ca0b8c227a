"""Orphan file cleaning: delete files under the table's ``data/`` and ``metadata/`` that nothing references.

Safety, in order:

1. Only the table's own ``<location>/data/`` and ``<location>/metadata/`` folders are listed, and
   every listed or deleted location is checked, in normal form (see
   :func:`~airflow_provider_amoro.maintenance.storage.normalize_location`), to lie strictly inside
   them: a neighbour sharing the prefix (``…/orders2`` next to ``…/orders``), another scheme or
   bucket, or a path climbing out with ``..`` is never touched. Local symlinks are neither
   followed nor deleted, and a file whose real path leaves the table folder is skipped.
2. References are read, then storage is listed (streamed, keeping only unreferenced candidates),
   then the table is refreshed and every file referenced by a snapshot committed since the first
   read is dropped from the candidates: a file committed before or during the listing is never
   deleted.
3. A file is referenced when the current metadata file, a metadata log entry, a statistics or
   partition statistics file, any snapshot's manifest list, any manifest of those, or any entry
   (any status, data or delete file) of those manifests names it. Manifest lists or manifests that
   cannot be read abort the run: nothing is deleted on partial knowledge.
4. Only files older than ``clean-orphan-file.min-existing-time-minutes`` (default 2880) are
   deleted, which protects files a writer has written but not yet committed.
5. As Amoro does, empty folders under a local ``data/`` (partition folders emptied by expiry) are
   removed when older than the same window (object stores have no folders).
6. As in Amoro, files under ``metadata/`` whose name starts with the latest Flink job id (summary
   ``flink.job-id``) are kept: Flink writes manifests there at checkpoints and commits them when
   the checkpoint completes, possibly after restoring from an old checkpoint.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from airflow_provider_amoro.maintenance.config import MaintenanceConfig
from airflow_provider_amoro.maintenance.reach import iter_entries, manifests_of, metadata_files
from airflow_provider_amoro.maintenance.results import OrphanResult, to_epoch_ms
from airflow_provider_amoro.maintenance.storage import (
    ListedFile,
    delete_files,
    is_under,
    list_files,
    normalize_location,
    remove_empty_local_dirs,
)

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable, Mapping

    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

__all__ = ["clean_orphan_files", "referenced_files"]

logger = logging.getLogger(__name__)
SAMPLE = 20
# Written by file-system (Hadoop) catalogs next to the metadata files; never an orphan.
_PROTECTED_NAMES = ("version-hint.text",)
FLINK_JOB_ID = "flink.job-id"


def _latest_flink_job_id(table: Table) -> str | None:
    job_id: str | None = None
    for snapshot in table.metadata.snapshots:
        summary = snapshot.summary
        value = summary.additional_properties.get(FLINK_JOB_ID) if summary is not None else None
        if value:
            job_id = value
    return job_id


def _referenced_by_snapshots(table: Table, snapshots: Iterable[Snapshot], log: logging.Logger) -> set[str]:
    snapshots = list(snapshots)
    refs = {normalize_location(s.manifest_list) for s in snapshots if s.manifest_list}
    manifests = manifests_of(table.io, snapshots, strict=True, log=log)
    refs.update(normalize_location(path) for path in manifests)
    for content in iter_entries(table.io, manifests.values(), strict=True, log=log):
        refs.add(normalize_location(content.path))
    return refs


def referenced_files(table: Table, log: logging.Logger | None = None) -> set[str]:
    """Every file the table's current metadata references, in normal form (see the module docs).

    Args:
        table: the table (its loaded metadata is used).
        log: logger.

    Returns:
        Normalized locations.
    """
    log = log or logger
    refs = {normalize_location(p) for p in metadata_files(table.metadata, table.metadata_location)}
    refs.update(_referenced_by_snapshots(table, table.metadata.snapshots, log))
    return refs


def clean_orphan_files(
    table: Table,
    *,
    now: dt.datetime | int | None = None,
    min_existing_time_minutes: int | None = None,
    dry_run: bool = False,
    log: logging.Logger | None = None,
    properties: Mapping[str, str] | None = None,
    force: bool = False,
) -> OrphanResult:
    """Delete files under the table's ``data/`` and ``metadata/`` folders that nothing references.

    Args:
        table: the pyiceberg table (refreshed in place).
        now: the current time (datetime, naive = UTC, or epoch ms) for the age check; the clock when None.
        min_existing_time_minutes: overrides ``clean-orphan-file.min-existing-time-minutes``.
        dry_run: report the orphans without deleting them.
        log: logger for progress.
        properties: property overrides applied over the table's own properties (e.g. from the DAG
            factory's configuration).
        force: run even when ``clean-orphan-file.enabled`` is false (Amoro's default: orphan cleaning
            is opt-in per table); ``gc.enabled=false`` still wins.

    Returns:
        An :class:`OrphanResult`; ``skipped`` with a reason when ``gc.enabled`` is false, or when
        ``clean-orphan-file.enabled`` is false and ``force`` is not set.

    Raises:
        InvalidPropertyError: on a bad maintenance property value.
    """
    log = log or logger
    started = time.monotonic()
    result = OrphanResult(table=".".join(table.name()), dry_run=dry_run)
    config = MaintenanceConfig.for_table(table, properties)
    if not config.gc_enabled:
        return result.skip("gc.enabled=false")
    if not config.clean_orphan_file_enabled and not force:
        return result.skip("clean-orphan-file.enabled=false")
    min_minutes = (
        min_existing_time_minutes
        if min_existing_time_minutes is not None
        else config.orphan_min_existing_time_minutes
    )
    if min_minutes < 0:
        raise ValueError(f"min_existing_time_minutes must be >= 0, got {min_minutes}")
    older_than_ms = to_epoch_ms(now) - min_minutes * 60_000
    root = normalize_location(table.location())
    folders = [f"{root}/data", f"{root}/metadata"]

    def inside(location: str) -> bool:
        normal = normalize_location(location)
        return any(is_under(normal, folder) for folder in folders)

    candidates = _orphan_candidates(table, root, folders, older_than_ms, result, log)
    result.orphan_files = len(candidates)
    result.bytes_freed = sum(c.size for c in candidates)
    result.orphan_paths_sample = sorted(c.location for c in candidates)[:SAMPLE]
    if candidates and not dry_run:
        result.deleted_files, result.failed_deletes = delete_files(
            table.io, [c.location for c in candidates], log, guard=inside, what="orphan files"
        )
    if not dry_run:
        result.removed_empty_folders = remove_empty_local_dirs(folders[0], older_than_ms, log)
    result.duration_s = time.monotonic() - started
    log.info(
        "orphan cleaning of %s: %d listed, %d referenced, %d orphans (%d bytes) %s, %d too young",
        result.table,
        result.listed_files,
        result.referenced_files,
        result.orphan_files,
        result.bytes_freed,
        "found (dry run)" if dry_run else "deleted",
        result.too_young_files,
    )
    return result


def _orphan_candidates(
    table: Table,
    root: str,
    folders: list[str],
    older_than_ms: int,
    result: OrphanResult,
    log: logging.Logger,
) -> list[ListedFile]:
    """Unreferenced files under ``folders``, old enough, and named by nothing committed meanwhile."""
    # 1. what the table references now (a set of normalized paths)
    table.refresh()
    seen_snapshots = {s.snapshot_id for s in table.metadata.snapshots}
    refs = referenced_files(table, log)
    result.referenced_files = len(refs)

    flink_job = _latest_flink_job_id(table)

    def protected(location: str) -> bool:
        name = location.rsplit("/", 1)[-1]
        if name in _PROTECTED_NAMES:
            return True
        return flink_job is not None and name.startswith(flink_job) and is_under(location, folders[1])

    # 2. stream the listing; keep only unreferenced files old enough to go
    candidates: list[ListedFile] = []
    for folder in folders:
        for item in list_files(table.io, folder, log):
            result.listed_files += 1
            if result.listed_files % 10_000 == 0:
                log.info("listed %d files under %s", result.listed_files, root)
            if item.location in refs or protected(item.location):
                continue
            if item.mtime_ms is None or item.mtime_ms > older_than_ms:
                result.too_young_files += 1
                continue
            candidates.append(item)
    del refs

    # 3. anything committed meanwhile is protected too
    table.refresh()
    new_snapshots = [s for s in table.metadata.snapshots if s.snapshot_id not in seen_snapshots]
    late = {normalize_location(p) for p in metadata_files(table.metadata, table.metadata_location)}
    late.update(_referenced_by_snapshots(table, new_snapshots, log))
    return [c for c in candidates if c.location not in late]
