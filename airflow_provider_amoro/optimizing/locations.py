"""Where a file of a table lives for pyarrow: its filesystem and native path, found cheaply.

pyiceberg's ``PyArrowFileIO`` parses every location with ``urlparse`` before it opens it: for the
thousands of one-entry manifests and few-KB data files of a streaming table's history that is a
fifth of reading a manifest, and it ran on the reading thread, holding the GIL, once per file.
:func:`native_location` resolves each directory once per FileIO and appends the file name
(unusual locations are parsed by pyiceberg as before).
"""

from __future__ import annotations

import re
import threading
import weakref

import pyarrow.fs as pafs
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import PyArrowFileIO

_SIMPLE_NAME = re.compile(r"[A-Za-z0-9._-]+\Z")
_directories: weakref.WeakKeyDictionary[FileIO, dict[str, tuple[pafs.FileSystem, str]]] = (
    weakref.WeakKeyDictionary()
)
_directories_lock = threading.Lock()
MAX_DIRECTORIES = 10_000
"""Directories remembered per FileIO (a table partitioned by day over decades has this many)."""


def native_location(io: FileIO, path: str) -> tuple[pafs.FileSystem, str] | None:
    """The pyarrow filesystem and native path of ``path`` for a ``PyArrowFileIO``, as its
    ``new_input`` resolves them; None for another FileIO.

    A plain file name (letters, digits, ``.``, ``_``, ``-``) in an absolute or scheme-qualified
    directory takes the directory resolved once per FileIO; any other location is parsed by
    pyiceberg, every time.
    """
    if not isinstance(io, PyArrowFileIO):
        return None
    directory, _, name = path.rpartition("/")
    if _SIMPLE_NAME.match(name) and (directory.startswith("/") or "://" in directory):
        hit = _directory(io, directory)
        if hit is not None:
            filesystem, prefix = hit
            return filesystem, prefix + name
    scheme, netloc, native = PyArrowFileIO.parse_location(path, io.properties)
    return io.fs_by_scheme(scheme, netloc), native


def _directory(io: PyArrowFileIO, directory: str) -> tuple[pafs.FileSystem, str] | None:
    """The filesystem of ``directory`` and its native path with a trailing ``/`` (remembered per
    FileIO); None when pyiceberg would not parse ``directory/name`` as the directory plus the name."""
    with _directories_lock:
        known = _directories.setdefault(io, {})
    hit = known.get(directory)
    if hit is None:
        if "?" in directory or "#" in directory:
            return None  # a query or fragment to urlparse: not a plain directory
        scheme, netloc, probe = PyArrowFileIO.parse_location(f"{directory}/_", io.properties)
        if not probe.endswith("/_"):
            return None
        if len(known) >= MAX_DIRECTORIES:
            known.clear()
        hit = known[directory] = (io.fs_by_scheme(scheme, netloc), probe[:-1])
    return hit
