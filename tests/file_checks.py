"""File-level checks shared by the data-safety tests: every referenced file exists, nothing is left over.

Both read the table's metadata and storage directly (pyiceberg manifests, a local directory walk),
independently of the cleanup code under test.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from pyiceberg.table import Table


def _local(path: str) -> str:
    parsed = urlparse(path)
    return parsed.path if parsed.scheme in ("file", "") else path


def referenced_files(table: Table) -> set[str]:
    """Local paths of every data and delete file any retained snapshot references (live entries)."""
    table.refresh()
    out: set[str] = set()
    seen: set[str] = set()
    for snap in table.metadata.snapshots:
        for manifest in snap.manifests(table.io):
            if manifest.manifest_path in seen:
                continue
            seen.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                out.add(os.path.normpath(_local(entry.data_file.file_path)))
    return out


def missing_referenced_files(table: Table) -> list[str]:
    """Referenced files that do not exist (must be empty)."""
    return sorted(p for p in referenced_files(table) if not os.path.exists(p))


def data_folder_files(table: Table) -> set[str]:
    """Every file under the table's local ``data/`` folder."""
    root = _local(table.location().rstrip("/") + "/data")
    found: set[str] = set()
    for folder, _dirs, files in os.walk(root):
        found.update(os.path.normpath(os.path.join(folder, f)) for f in files)
    return found


def unreferenced_data_files(table: Table) -> list[str]:
    """Files in the data folder that no retained snapshot references (leftovers)."""
    return sorted(data_folder_files(table) - referenced_files(table))
