"""Dangling delete files: live delete files that apply to no live data file, removed in a REPLACE commit.

A delete file dangles when, by the Iceberg v2 rules (:func:`~airflow_provider_amoro.optimizing.model.
delete_applies`: sequence numbers and partition scope), it applies to none of the current snapshot's
live data files. Position delete files get one more check: the lower/upper bounds of their
``file_path`` column must cover the path of at least one live data file they may apply to; a
position delete whose bounds cover no such path dangles too (a file-scoped position delete, whose
bounds name exactly one data file, dangles when that file is gone).

The removal is one ``replace`` snapshot (``snapshot-producer=CLEAN_DANGLING_DELETE``, as Amoro)
through :func:`~airflow_provider_amoro.optimizing.commit.replace_files` (no row changes). On a
concurrent commit the check is made again on the new head before retrying; if a chosen file applies
again there, nothing is removed and the run reports it (a later run retries).
"""

from __future__ import annotations

import bisect
import logging
import time
from typing import TYPE_CHECKING

from pyiceberg.manifest import DataFileContent, ManifestContent

from airflow_provider_amoro.maintenance.config import MaintenanceConfig
from airflow_provider_amoro.maintenance.results import DanglingResult
from airflow_provider_amoro.optimizing.commit import CommitValidationError, HeadState, replace_files
from airflow_provider_amoro.optimizing.delete_files import POS_FILE_PATH_FIELD_ID
from airflow_provider_amoro.optimizing.model import FileRef, delete_applies
from airflow_provider_amoro.optimizing.scan import DeleteFileIndex, live_files
from airflow_provider_amoro.properties import PRODUCER_CLEAN_DANGLING_DELETE, SNAPSHOT_PRODUCER

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pyiceberg.table import Table

__all__ = ["clean_dangling_delete_files", "find_dangling_delete_files"]

logger = logging.getLogger(__name__)


def _position_bounds(table: Table, paths: set[str]) -> dict[str, tuple[bytes | None, bytes | None]]:
    """``file_path`` lower/upper bounds of the given position delete files of the current snapshot."""
    snapshot = table.current_snapshot()
    out: dict[str, tuple[bytes | None, bytes | None]] = {}
    if snapshot is None or not paths:
        return out
    for manifest in snapshot.manifests(table.io):
        if manifest.content != ManifestContent.DELETES:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            df = entry.data_file
            if df.content == DataFileContent.POSITION_DELETES and df.file_path in paths:
                lower = (df.lower_bounds or {}).get(POS_FILE_PATH_FIELD_ID)
                upper = (df.upper_bounds or {}).get(POS_FILE_PATH_FIELD_ID)
                out[df.file_path] = (lower, upper)
    return out


def find_dangling_delete_files(table: Table) -> list[FileRef]:
    """The live delete files of the current snapshot that apply to no live data file.

    Args:
        table: the table (its loaded metadata is used).

    Returns:
        The dangling delete files, sorted by path.
    """
    return _find(table)[0]


def _find(table: Table) -> tuple[list[FileRef], int]:
    """Dangling delete files and the number of live delete files."""
    files = live_files(table)
    if not files.delete_files:
        return [], 0
    dangling = {d.path: d for d in DeleteFileIndex(files.delete_files).dangling(files.data_files)}
    unsure = {
        d.path: d
        for d in files.delete_files
        if d.content == "position_deletes" and d.path not in dangling and d.referenced_data_file is None
    }
    if unsure:
        data = sorted(files.data_files, key=lambda f: f.path.encode("utf-8"))
        keys = [f.path.encode("utf-8") for f in data]
        for path, (lower, upper) in _position_bounds(table, set(unsure)).items():
            if lower is None or upper is None:
                continue  # no bounds: cannot tell, keep it
            start = bisect.bisect_left(keys, lower)
            end = bisect.bisect_right(keys, upper)
            delete = unsure[path]
            if not any(delete_applies(delete, data[i]) for i in range(start, end)):
                dangling[path] = delete
    return sorted(dangling.values(), key=lambda f: f.path), len(files.delete_files)


def clean_dangling_delete_files(
    table: Table,
    *,
    dry_run: bool = False,
    log: logging.Logger | None = None,
    properties: Mapping[str, str] | None = None,
    force: bool = False,
    producer: str = PRODUCER_CLEAN_DANGLING_DELETE,
) -> DanglingResult:
    """Remove the delete files that apply to no live data file, in one REPLACE commit.

    Args:
        table: the pyiceberg table (refreshed in place).
        dry_run: report the dangling delete files without committing.
        log: logger for progress.
        properties: property overrides applied over the table's own properties (e.g. from the DAG
            factory's configuration).
        force: run even when ``clean-dangling-delete-files.enabled`` is false (data expiry uses it).
        producer: ``snapshot-producer`` of the commit (data expiry passes ``DATA_EXPIRATION``).

    Returns:
        A :class:`DanglingResult`; ``skipped`` when ``gc.enabled`` or
        ``clean-dangling-delete-files.enabled`` is false.

    Raises:
        InvalidPropertyError: on a bad maintenance property value.
    """
    log = log or logger
    started = time.monotonic()
    result = DanglingResult(table=".".join(table.name()), dry_run=dry_run)
    config = MaintenanceConfig.for_table(table, properties)
    if not config.gc_enabled:
        return result.skip("gc.enabled=false")
    if not config.clean_dangling_delete_files_enabled and not force:
        return result.skip("clean-dangling-delete-files.enabled=false")
    table.refresh()
    base = table.current_snapshot()
    dangling, result.delete_files = _find(table)
    result.dangling_position_deletes = sum(1 for d in dangling if d.content == "position_deletes")
    result.dangling_equality_deletes = sum(1 for d in dangling if d.content == "equality_deletes")
    result.removed_paths = [d.path for d in dangling]
    log.info("dangling delete files of %s: %d", result.table, len(dangling))
    if dangling and not dry_run and base is not None:
        chosen = {d.path for d in dangling}

        def still_dangling(state: HeadState) -> None:
            if state.snapshot is not None and state.snapshot.snapshot_id == base.snapshot_id:
                return
            now_dangling = {d.path for d in find_dangling_delete_files(table)}
            if not chosen <= now_dangling:
                raise CommitValidationError(
                    f"delete files apply again after a concurrent commit: {sorted(chosen - now_dangling)}"
                )

        try:
            commit = replace_files(
                table,
                remove_deletes=sorted(chosen),
                summary={SNAPSHOT_PRODUCER: producer},
                validate=still_dangling,
            )
        except CommitValidationError as exc:
            log.warning("dangling delete cleaning of %s gave up: %s (run again later)", result.table, exc)
            result.removed_paths = []
            return result.skip(f"concurrent change: {exc}")
        result.snapshot_id = commit.snapshot_id
    result.duration_s = time.monotonic() - started
    return result
