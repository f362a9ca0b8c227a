"""Finding an optimizing process in the table, and removing its files only when nothing references them.

Three guarantees build on this module:

- **A process is identified by its plan id.** The commit writes ``amoro.process-id = <plan_id>``
  into the summary of its snapshot; :func:`snapshot_of_process` scans the *retained snapshots*
  (not a parent walk, so a later rollback or a branch does not hide it). When that snapshot has
  been expired, a process still counts as landed while a retained snapshot references one of its
  output files (:func:`referenced_paths`).
- **Cleanup never deletes a referenced file.** :func:`delete_unreferenced` refreshes the table,
  reads the manifests of every retained snapshot (every branch and tag, every entry status) that
  can name the files, and deletes only the files none of them names. When the check itself fails
  (catalog or storage unreachable), nothing is deleted.
- **Outputs of dead processes are found.** Every output file name of a process starts with
  ``amoro-<plan_id>-t<task>-`` (:func:`~.model.output_prefix`), written into folders known when the
  plan is made (:func:`output_folders`); :func:`list_process_outputs` lists them, so files of a
  worker that was killed before it could report them are found and removed.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_amoro.optimizing.model import OptimizingPlan, decode_partition, output_prefix

if TYPE_CHECKING:
    from pyiceberg.io import FileIO
    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadata

logger = logging.getLogger(__name__)

PROCESS_ID_KEY = "amoro.process-id"
"""Snapshot summary key holding the plan id of the optimizing process that committed the snapshot."""

MAX_OUTPUT_FOLDERS = 100
"""Above this many partition folders, a process records the table's data folder instead."""


def snapshot_of_process(metadata: TableMetadata, plan_id: str) -> int | None:
    """The retained snapshot whose summary names ``plan_id`` (see :data:`PROCESS_ID_KEY`), or None."""
    if not plan_id:
        return None
    for snapshot in metadata.snapshots:
        summary = snapshot.summary
        if summary is not None and summary[PROCESS_ID_KEY] == plan_id:
            return int(snapshot.snapshot_id)
    return None


def referenced_paths(
    metadata: TableMetadata, io: FileIO, paths: Iterable[str], *, min_sequence_number: int | None = None
) -> set[str]:
    """Which of ``paths`` a retained snapshot references (any branch or tag, any entry status).

    Args:
        metadata: fresh table metadata.
        io: the table's FileIO.
        paths: candidate file locations (compared in normal form).
        min_sequence_number: on format v2+, only snapshots and manifests with a higher sequence
            number are read (files written after a plan on that sequence number cannot be named by
            older manifests). None: read every manifest.

    Returns:
        The candidates (as given) that some manifest names.

    Raises:
        Exception: a manifest list or manifest could not be read; the caller must then keep files.
    """
    from airflow_provider_amoro.maintenance.reach import iter_entries, manifests_of
    from airflow_provider_amoro.maintenance.storage import normalize_location

    wanted = {normalize_location(p): p for p in paths}
    if not wanted:
        return set()
    floor = min_sequence_number if int(metadata.format_version) >= 2 else None
    snapshots = [s for s in metadata.snapshots if floor is None or (s.sequence_number or 0) > floor]
    manifests = manifests_of(io, snapshots, strict=True, log=logger)
    chosen = [m for m in manifests.values() if floor is None or (m.sequence_number or 0) > floor]
    found: set[str] = set()
    for entry in iter_entries(io, chosen, strict=True, log=logger):
        original = wanted.get(normalize_location(entry.path))
        if original is not None:
            found.add(original)
    return found


@dataclass
class CleanupResult:
    """What a cleanup of optimizing outputs did.

    Attributes:
        candidates: files considered.
        deleted: files deleted (or already gone).
        kept_referenced: files kept because a retained snapshot references them.
        failed: deletions that failed (the files stay; orphan cleaning removes them later).
        error: why nothing was deleted (the reference check failed), else None.
    """

    candidates: int = 0
    deleted: int = 0
    kept_referenced: int = 0
    failed: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


def delete_unreferenced(
    table: Table, paths: Iterable[str], *, min_sequence_number: int | None = None, what: str = "files"
) -> CleanupResult:
    """Delete the files of ``paths`` that no retained snapshot references; never raises.

    The table is refreshed first. If the references cannot be read, nothing is deleted.

    Args:
        table: the table the files were written for.
        paths: candidate file locations.
        min_sequence_number: see :func:`referenced_paths` (the plan's base sequence number).
        what: a word for the log lines.
    """
    from airflow_provider_amoro.maintenance.storage import delete_files

    candidates = sorted(set(paths))
    result = CleanupResult(candidates=len(candidates))
    if not candidates:
        return result
    try:
        table.refresh()
        referenced = referenced_paths(
            table.metadata, table.io, candidates, min_sequence_number=min_sequence_number
        )
    except Exception as exc:  # noqa: BLE001 - unknown references: keep every file
        result.error = f"{type(exc).__name__}: {exc}"
        logger.error("cannot check which %s are referenced, keeping all %d: %s", what, len(candidates), exc)
        return result
    result.kept_referenced = len(referenced)
    if referenced:
        logger.warning(
            "keeping %d of %d %s: a retained snapshot references them", len(referenced), len(candidates), what
        )
    todo = [p for p in candidates if p not in referenced]
    result.deleted, result.failed = delete_files(table.io, todo, logger, what=what)
    logger.info(
        "cleanup of %s: %d candidates, %d deleted, %d kept (referenced), %d failed",
        what,
        result.candidates,
        result.deleted,
        result.kept_referenced,
        result.failed,
    )
    return result


def output_folders(table: Table, plan: OptimizingPlan) -> list[str]:
    """The folders a plan's tasks write their outputs into (recorded before anything is written).

    A task on the table's current spec writes into its partition's folder; a task on an older spec
    (outputs re-partitioned), an object-store location provider (hashed folders) or more than
    :data:`MAX_OUTPUT_FOLDERS` folders fall back to the table's whole data folder.
    """
    from pyiceberg.table.locations import SimpleLocationProvider

    from airflow_provider_amoro.optimizing.delete_files import new_file_location

    provider = table.location_provider()
    root = provider.data_path.rstrip("/")
    if not isinstance(provider, SimpleLocationProvider):
        return [root]
    current = table.spec().spec_id
    folders: set[str] = set()
    for task in plan.tasks:
        if task.spec_id != current:
            return [root]
        location = new_file_location(table, task.spec_id, decode_partition(task.partition))
        folders.add(posixpath.dirname(location))
        if len(folders) > MAX_OUTPUT_FOLDERS:
            return [root]
    return sorted(folders)


def list_process_outputs(io: FileIO, plan_id: str, folders: Iterable[str]) -> list[str]:
    """Files below ``folders`` whose name carries the process's output prefix (see the module docs)."""
    from airflow_provider_amoro.maintenance.storage import list_files, normalize_location

    if not plan_id:
        return []
    marker = output_prefix(plan_id)
    found: set[str] = set()
    for folder in folders:
        try:
            listed = list(list_files(io, normalize_location(folder), logger))
        except FileNotFoundError:
            continue
        found.update(f.location for f in listed if marker in posixpath.basename(f.location))
    return sorted(found)


@dataclass
class ProcessOutcome:
    """What :func:`resolve_process` found out about a finished or abandoned process.

    Attributes:
        landed: whether the process's commit is in the table (by process id, or an output file a
            retained snapshot references); None when the references could not be read.
        snapshot_id: the snapshot that committed it, when retained.
        listed: output files of the process found in its folders.
        cleanup: what was deleted and kept.
    """

    landed: bool | None
    snapshot_id: int | None
    listed: int
    cleanup: CleanupResult

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "landed": self.landed,
            "snapshot_id": self.snapshot_id,
            "listed": self.listed,
            **self.cleanup.to_dict(),
        }


def resolve_process(
    table: Table,
    plan_id: str,
    folders: Iterable[str],
    *,
    min_sequence_number: int | None = None,
) -> ProcessOutcome:
    """Find out whether a process landed, and delete its output files that nothing references.

    Used by the next run after a process ended without a known outcome (``UNKNOWN``), died, or was
    abandoned: its files are listed by name (:func:`list_process_outputs`) in the folders it
    recorded before writing, so even outputs a killed worker never reported are found.

    Args:
        table: the table.
        plan_id: the process's plan id.
        folders: the output folders it recorded.
        min_sequence_number: its plan's base sequence number.

    Raises:
        Exception: the folders could not be listed or the table not refreshed (nothing deleted).
    """
    table.refresh()
    snapshot_id = snapshot_of_process(table.metadata, plan_id)
    files = list_process_outputs(table.io, plan_id, folders)
    cleanup = delete_unreferenced(
        table, files, min_sequence_number=min_sequence_number, what=f"outputs of process {plan_id}"
    )
    landed: bool | None = snapshot_id is not None or cleanup.kept_referenced > 0
    if cleanup.error is not None and snapshot_id is None:
        landed = None
    return ProcessOutcome(landed=landed, snapshot_id=snapshot_id, listed=len(files), cleanup=cleanup)
