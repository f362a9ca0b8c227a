"""Storage helpers for maintenance: normalized locations, listing under a table, parallel deletes.

Locations are compared in one normal form, ``scheme://netloc/path`` with ``s3a``/``s3n`` folded
into ``s3``, local paths (``/x``, ``file:/x``, ``file:///x``) as ``file:///x``, and ``.``, ``..``
and doubled slashes collapsed. Two spellings of the same file therefore compare equal, and a
path that climbs out of a folder with ``..`` is seen where it really points.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from pyiceberg.io import FileIO

__all__ = ["ListedFile", "delete_files", "is_under", "list_files", "normalize_location"]

_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}
DELETE_THREADS = 16


def normalize_location(location: str) -> str:
    """The normal form of a file or folder location (see the module docs).

    Args:
        location: a URI (``s3://b/k``, ``file:///p``, ``file:/p``) or a local path.

    Returns:
        ``scheme://netloc/path`` without a trailing slash, with ``.``/``..`` resolved.
    """
    parsed = urlparse(location)
    scheme = parsed.scheme.lower()
    if not scheme or (len(scheme) == 1 and os.name == "nt"):
        scheme, netloc, path = "file", "", location
    else:
        scheme = _SCHEME_ALIASES.get(scheme, scheme)
        netloc, path = parsed.netloc, parsed.path
    if scheme == "file":
        netloc = "" if netloc in ("", "localhost") else netloc
    path = posixpath.normpath("/" + path.lstrip("/")) if path else "/"
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return f"{scheme}://{netloc}{path}".rstrip("/") if path != "/" else f"{scheme}://{netloc}/"


def is_under(location: str, folder: str) -> bool:
    """Whether normalized ``location`` lies strictly inside normalized ``folder``.

    ``s3://b/wh/orders2/x`` is not under ``s3://b/wh/orders``; another scheme or bucket never is.
    """
    prefix = folder if folder.endswith("/") else folder + "/"
    return location.startswith(prefix) and len(location) > len(prefix)


@dataclass(frozen=True)
class ListedFile:
    """One file found in storage.

    Attributes:
        location: the normalized location (``scheme://netloc/path``).
        size: bytes.
        mtime_ms: last modification time, epoch milliseconds (None when storage does not say).
    """

    location: str
    size: int
    mtime_ms: int | None


def _local_path(folder: str) -> str:
    return urlparse(folder).path


def _list_local(folder: str, log: logging.Logger) -> Iterator[ListedFile]:
    """Walk a local folder without following symlinks; symlinks are skipped (never deleted)."""
    root = _local_path(folder)
    real_root = os.path.realpath(root)
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            entries = os.scandir(current)
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                if entry.is_symlink():
                    log.warning(
                        "skipping symlink %s (orphan cleaning never follows or deletes links)", entry.path
                    )
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    real = os.path.realpath(entry.path)
                    if not real.startswith(real_root + os.sep):
                        log.warning("skipping %s: it resolves outside %s", entry.path, real_root)
                        continue
                    st = entry.stat(follow_symlinks=False)
                    yield ListedFile(normalize_location(entry.path), st.st_size, int(st.st_mtime * 1000))


def _list_pyarrow(io: Any, folder: str) -> Iterator[ListedFile]:
    from pyarrow.fs import FileSelector, FileType

    parsed = urlparse(folder)
    scheme, netloc, path = io.parse_location(folder)
    fs = io.fs_by_scheme(scheme, netloc)
    stack = [path]
    while stack:
        current = stack.pop()
        infos = fs.get_file_info(FileSelector(current, allow_not_found=True, recursive=False))
        for info in infos:
            if info.type == FileType.Directory:
                stack.append(info.path)
            elif info.type == FileType.File:
                mtime = info.mtime_ns // 1_000_000 if info.mtime_ns is not None else None
                # pyarrow paths are "bucket/key" for object stores, "/path" for HDFS (netloc apart)
                host = parsed.netloc if scheme in ("hdfs", "viewfs") else ""
                location = normalize_location(f"{parsed.scheme}://{host}{info.path}")
                yield ListedFile(location, int(info.size or 0), mtime)


def _uncached(fs: Any) -> Any:
    """The same fsspec filesystem, built with ``use_listings_cache=False``.

    fsspec hands every user of the same options one instance, and a listing stored in its
    directory cache answers later ``info``/``open`` calls: files written by others after the
    listing (a writer's next manifest, a new ``metadata.json``) would not exist for this process.
    A separate instance that caches no listing leaves the shared one as it was.
    """
    options = {**fs.storage_options, "use_listings_cache": False}
    return type(fs)(*getattr(fs, "storage_args", ()), **options)


def _list_fsspec(io: Any, folder: str) -> Iterator[ListedFile]:
    parsed = urlparse(folder)
    fs = _uncached(io.get_fs(parsed.scheme))
    stack = [f"{parsed.netloc}{parsed.path}"]
    while stack:
        current = stack.pop()
        try:
            infos = fs.ls(current, detail=True)
        except FileNotFoundError:
            continue
        for info in infos:
            name = str(info["name"]).rstrip("/")
            if info.get("type") == "directory":
                if name != current.rstrip("/"):
                    stack.append(name)
                continue
            modified = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
            mtime: int | None = None
            if hasattr(modified, "timestamp"):
                mtime = int(modified.timestamp() * 1000)
            elif isinstance(modified, (int, float)):
                mtime = int(modified * 1000)
            yield ListedFile(
                normalize_location(f"{parsed.scheme}://{name}"), int(info.get("size") or 0), mtime
            )


def list_files(io: FileIO, folder: str, log: logging.Logger) -> Iterator[ListedFile]:
    """List every file below ``folder`` (recursively, one directory listing at a time).

    Local folders are walked with ``os.scandir`` without following symlinks; other schemes through
    the table's FileIO (pyarrow or fsspec filesystem). Only files inside ``folder`` are yielded.

    Args:
        io: the table's FileIO.
        folder: a normalized folder location.
        log: logger for skipped entries.

    Yields:
        The files found, in no particular order.
    """
    if folder.startswith("file://"):
        source: Iterable[ListedFile] = _list_local(folder, log)
    elif hasattr(io, "fs_by_scheme"):
        source = _list_pyarrow(io, folder)
    elif hasattr(io, "get_fs"):
        source = _list_fsspec(io, folder)
    else:
        raise TypeError(f"cannot list files with {type(io).__name__}")
    for listed in source:
        if is_under(listed.location, folder):
            yield listed
        else:
            log.warning("listing of %s returned %s, outside it: ignored", folder, listed.location)


def file_size(io: FileIO, location: str) -> int:
    """Size of a file in bytes, 0 when it cannot be read."""
    try:
        return len(io.new_input(location))
    except Exception:  # noqa: BLE001 - a size is informative only
        return 0


def delete_files(
    io: FileIO,
    locations: Iterable[str],
    log: logging.Logger,
    *,
    guard: Callable[[str], bool] | None = None,
    what: str = "files",
) -> tuple[int, int]:
    """Delete files in parallel; a failure is logged and counted, never raised.

    Args:
        io: the table's FileIO.
        locations: files to delete.
        log: progress and failure logger.
        guard: when given, a location for which it returns False is refused (logged, counted as failed).
        what: a word for the log lines.

    Returns:
        ``(deleted, failed)`` counts.
    """
    items = list(locations)
    deleted = failed = 0

    def one(location: str) -> bool:
        if guard is not None and not guard(location):
            log.error("refusing to delete %s: outside the allowed location", location)
            return False
        try:
            io.delete(location)
            return True
        except FileNotFoundError:
            return True
        except Exception as exc:  # noqa: BLE001 - keep deleting the others; the file stays an orphan
            log.warning("could not delete %s: %s", location, exc)
            return False

    with ThreadPoolExecutor(max_workers=DELETE_THREADS) as pool:
        for i, ok in enumerate(pool.map(one, items), start=1):
            if ok:
                deleted += 1
            else:
                failed += 1
            if i % 1000 == 0:
                log.info("deleted %d of %d %s", i, len(items), what)
    return deleted, failed


def remove_empty_local_dirs(folder: str, older_than_ms: int, log: logging.Logger) -> int:
    """Remove empty sub-folders of a local ``folder`` (never ``folder`` itself), deepest first.

    Only real directories (no symlinks) whose modification time is before ``older_than_ms`` go, so
    a folder a writer has just created for a new partition is left alone.

    Returns:
        The number of folders removed.
    """
    if not folder.startswith("file://"):
        return 0
    root = _local_path(folder)
    # modification times as they were before this pass (removing a child touches its parent)
    old_dirs: list[str] = []
    for current, dirs, _files in os.walk(root, topdown=True, followlinks=False):
        for name in dirs:
            path = os.path.join(current, name)
            try:
                if not os.path.islink(path) and os.stat(path).st_mtime * 1000 < older_than_ms:
                    old_dirs.append(path)
            except OSError:
                continue
    removed = 0
    for path in sorted(old_dirs, key=lambda p: p.count(os.sep), reverse=True):  # deepest first
        try:
            if not os.listdir(path):
                os.rmdir(path)
                removed += 1
        except OSError as exc:  # a writer put a file in it meanwhile, or it is gone
            log.debug("kept folder %s: %s", path, exc)
    return removed
