"""Independent views of a table for maintenance tests: storage listings and reachable files.

Nothing here uses the maintenance package: storage is listed with ``os.walk`` or ``s3fs``, and
what snapshots reach comes from pyiceberg's ``inspect`` tables.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from urllib.parse import urlparse

from builders import id_v_rows
from pyiceberg.table import Table

from airflow_provider_amoro.testing.reader import content_hash, read_table


def storage_files(table: Table, root: str | None = None) -> set[str]:
    """Every file under ``root`` (default: the table location), as ``scheme://…`` strings."""
    location = (root or table.location()).rstrip("/")
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        base = parsed.path
        found: set[str] = set()
        for folder, _dirs, names in os.walk(base):
            found.update("file://" + os.path.join(folder, n) for n in names)
        return found
    import s3fs

    props = table.io.properties
    fs = s3fs.S3FileSystem(
        key=props["s3.access-key-id"],
        secret=props["s3.secret-access-key"],
        client_kwargs={"endpoint_url": props["s3.endpoint"], "region_name": props["s3.region"]},
        use_listings_cache=False,
    )
    return {f"s3://{p}" for p in fs.find(f"{parsed.netloc}{parsed.path}")}


def norm(path: str) -> str:
    """``file:/x`` and ``file:///x`` as ``file:///x``."""
    if path.startswith("file:") and not path.startswith("file:///"):
        return "file:///" + path[len("file:") :].lstrip("/")
    return path


def reachable(table: Table, snapshot_ids: Iterable[int], *, live_only: bool = True) -> set[str]:
    """Manifest lists, manifests and content files the given snapshots reach (pyiceberg inspect)."""
    result: set[str] = set()
    for sid in snapshot_ids:
        snapshot = table.snapshot_by_id(sid)
        assert snapshot is not None, f"no snapshot {sid}"
        result.add(norm(snapshot.manifest_list))
        result.update(norm(m.manifest_path) for m in snapshot.manifests(table.io))
        entries = table.inspect.entries(snapshot_id=sid).to_pylist()
        for entry in entries:
            if not live_only or entry["status"] != 2:
                result.add(norm(entry["data_file"]["file_path"]))
    return result


def snapshot_hashes(table: Table) -> dict[int, str]:
    """content_hash of every snapshot, read with iceberg-rust."""
    return {
        s.snapshot_id: content_hash(read_table(table, snapshot_id=s.snapshot_id)) for s in table.snapshots()
    }


def while_appending(
    writer: Table, ids: Iterable[int], action: Callable[[], int], repeat: int
) -> tuple[int, list[int]]:
    """Run ``action`` ``repeat`` times while a thread appends one row per id through ``writer``.

    Returns:
        The sum of what ``action`` returned and the ids the thread appended (its errors re-raised).
    """
    appended: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def append() -> None:
        try:
            for i in ids:
                if stop.is_set():
                    return
                writer.append(id_v_rows([i]))
                appended.append(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    thread = threading.Thread(target=append)
    thread.start()
    total = 0
    try:
        for _ in range(repeat):
            total += action()
    finally:
        stop.set()
        thread.join()
    if errors:
        raise errors[0]
    return total, appended
