"""What snapshots reach: manifest lists, manifests and content files, read one manifest at a time.

Memory stays bounded on large tables: a manifest list or a manifest is read, its paths are taken,
and it is dropped; only sets of paths (and, for deletion candidates, their sizes) are kept. Each
distinct manifest is read once, however many snapshots share it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyiceberg.manifest import DataFileContent, ManifestEntryStatus, ManifestFile

if TYPE_CHECKING:
    from pyiceberg.io import FileIO
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.snapshots import Snapshot

__all__ = ["ContentFile", "iter_entries", "manifests_of", "metadata_files"]

READ_THREADS = 8


@dataclass(frozen=True)
class ContentFile:
    """A data or delete file named by a manifest entry.

    Attributes:
        path: the file location as written in the manifest.
        content: ``data``, ``position_deletes`` or ``equality_deletes``.
        size: bytes.
        live: whether the entry is ADDED or EXISTING (not DELETED).
    """

    path: str
    content: str
    size: int
    live: bool


_CONTENT = {
    DataFileContent.DATA: "data",
    DataFileContent.POSITION_DELETES: "position_deletes",
    DataFileContent.EQUALITY_DELETES: "equality_deletes",
}


def manifests_of(
    io: FileIO, snapshots: Iterable[Snapshot], *, strict: bool, log: logging.Logger
) -> dict[str, ManifestFile]:
    """The distinct manifests of ``snapshots``, by path.

    Args:
        io: the table's FileIO.
        snapshots: snapshots whose manifest lists are read.
        strict: raise when a manifest list cannot be read (True for snapshots that are kept: a file
            must never be deleted because its reference could not be read); when False, log and skip.
        log: logger.
    """
    result: dict[str, ManifestFile] = {}
    for snapshot in snapshots:
        try:
            manifests = snapshot.manifests(io)
        except Exception as exc:
            if strict:
                raise
            log.warning("cannot read manifest list %s: %s (skipped)", snapshot.manifest_list, exc)
            continue
        for manifest in manifests:
            result.setdefault(manifest.manifest_path, manifest)
    return result


def iter_entries(
    io: FileIO,
    manifests: Iterable[ManifestFile],
    *,
    strict: bool,
    log: logging.Logger,
    stop: Callable[[], bool] | None = None,
) -> Iterator[ContentFile]:
    """Yield every entry (all statuses) of ``manifests``, reading a few manifests in parallel.

    Args:
        io: the table's FileIO.
        manifests: the manifests to read.
        strict: raise on a manifest that cannot be read, else log and skip it.
        log: logger.
        stop: checked between manifests; reading ends early when it returns True.
    """
    todo = list(manifests)

    def read(manifest: ManifestFile) -> list[ContentFile] | None:
        try:
            entries = manifest.fetch_manifest_entry(io, discard_deleted=False)
        except Exception as exc:
            if strict:
                raise
            log.warning("cannot read manifest %s: %s (skipped)", manifest.manifest_path, exc)
            return None
        return [
            ContentFile(
                path=e.data_file.file_path,
                content=_CONTENT[e.data_file.content],
                size=int(e.data_file.file_size_in_bytes),
                live=e.status != ManifestEntryStatus.DELETED,
            )
            for e in entries
        ]

    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for start in range(0, len(todo), READ_THREADS * 4):
            if stop is not None and stop():
                return
            for files in pool.map(read, todo[start : start + READ_THREADS * 4]):
                if files:
                    yield from files
            if start and start % (READ_THREADS * 40) == 0:
                log.info("read %d of %d manifests", start, len(todo))


def metadata_files(metadata: TableMetadata, metadata_location: str | None) -> set[str]:
    """Files the table metadata itself names: current and logged metadata files, statistics files."""
    files = {entry.metadata_file for entry in metadata.metadata_log}
    if metadata_location:
        files.add(metadata_location)
    files.update(s.statistics_path for s in metadata.statistics)
    files.update(s.statistics_path for s in metadata.partition_statistics)
    return files
