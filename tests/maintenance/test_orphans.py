"""Orphan cleaning: only unreferenced, old files inside the table's data/ and metadata/ folders go."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from builders import ID_V_SCHEMA, id_v_rows, new_table
from catalogs import make_catalog
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from airflow_provider_amoro.maintenance import clean_orphan_files
from airflow_provider_amoro.maintenance.storage import is_under, normalize_location
from airflow_provider_amoro.testing.deletes import add_position_deletes, live_data_files
from airflow_provider_amoro.testing.reader import read_table

from .helpers import reachable, snapshot_hashes, storage_files, while_appending

LATER = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)


def _write(table: Table, location: str, payload: bytes = b"stray") -> str:
    with table.io.new_output(location).create(overwrite=True) as out:
        out.write(payload)
    return location


def _table_with_history(lake: Catalog, name: str = "ns.orders") -> Any:
    if ("ns",) not in lake.list_namespaces():
        lake.create_namespace("ns")
    table = lake.create_table(name, schema=ID_V_SCHEMA, properties={"clean-orphan-file.enabled": "true"})
    table.append(id_v_rows(range(10)))
    table.append(id_v_rows(range(10, 20)))
    add_position_deletes(table, {live_data_files(table)[0].file_path: [0]})
    table.delete("id = 15")
    return table


def test_only_unreferenced_old_files_inside_the_table_go(lake: Catalog) -> None:
    table = _table_with_history(lake)
    neighbour = _table_with_history(lake, "ns.orders2")
    root = table.location().rstrip("/")
    strays = {
        _write(table, f"{root}/data/stray-{uuid.uuid4().hex}.parquet"),
        _write(table, f"{root}/data/part=1/deep/stray.parquet"),
        _write(table, f"{root}/metadata/stray-m0.avro"),
        _write(table, f"{root}/metadata/00099-{uuid.uuid4()}.metadata.json"),
    }
    outside = {
        _write(table, f"{root}/stray-at-root.txt"),  # not under data/ or metadata/
        _write(table, f"{root}2/data/stray-in-neighbour.parquet"),  # orders2 shares the prefix
        _write(table, f"{root}-x/data/stray.parquet"),
    }
    hashes = snapshot_hashes(table)
    neighbour_files = storage_files(neighbour)
    referenced = reachable(table, [s.snapshot_id for s in table.snapshots()], live_only=False)
    before = storage_files(table) | storage_files(table, root + "2") | storage_files(table, root + "-x")

    dry = clean_orphan_files(table, now=LATER, dry_run=True)
    assert dry.orphan_files == len(strays) and dry.deleted_files == 0
    assert (
        storage_files(table) | storage_files(table, root + "2") | storage_files(table, root + "-x") == before
    )

    result = clean_orphan_files(table, now=LATER)
    after = storage_files(table) | storage_files(table, root + "2") | storage_files(table, root + "-x")
    assert before - after == {normalize_location(s) for s in strays}
    assert result.deleted_files == len(strays) and result.failed_deletes == 0
    assert result.bytes_freed == sum(len(b"stray") for _ in strays)
    assert referenced <= after
    assert {normalize_location(o) for o in outside} <= after
    assert storage_files(neighbour) == neighbour_files
    assert snapshot_hashes(table) == hashes
    assert result.to_dict()["orphan_files"] == len(strays)


def test_latest_flink_job_manifests_are_kept(sqlite_catalog: Catalog) -> None:
    table = _table_with_history(sqlite_catalog)
    table.append(id_v_rows([99]), snapshot_properties={"flink.job-id": "0f1e2d3c"})
    root = table.location().rstrip("/")
    pending = _write(table, f"{root}/metadata/0f1e2d3c-1-2-0001.avro")  # a Flink checkpoint manifest
    other = _write(table, f"{root}/metadata/aaaa-1-2-0001.avro")
    in_data = _write(table, f"{root}/data/0f1e2d3c-stray.parquet")  # only metadata/ is exempt
    result = clean_orphan_files(table, now=LATER)
    left = storage_files(table)
    assert normalize_location(pending) in left
    assert normalize_location(other) not in left and normalize_location(in_data) not in left
    assert result.deleted_files == 2


def test_opt_in_like_amoro(sqlite_catalog: Catalog) -> None:
    table = new_table(sqlite_catalog, "ns.t", ID_V_SCHEMA)
    table.append(id_v_rows([1]))
    stray = _write(table, f"{table.location().rstrip('/')}/data/stray.parquet")
    assert clean_orphan_files(table, now=LATER).skip_reason == "clean-orphan-file.enabled=false"
    assert normalize_location(stray) in storage_files(table)
    overrides = {"clean-orphan-file.enabled": "true", "clean-orphan-file.min-existing-time-minutes": "1"}
    assert clean_orphan_files(table, properties=overrides).too_young_files == 1  # overrides apply
    assert clean_orphan_files(table, now=LATER, force=True).deleted_files == 1
    table.transaction().set_properties({"gc.enabled": "false"}).commit_transaction()
    assert clean_orphan_files(table, now=LATER, force=True).skip_reason == "gc.enabled=false"


def test_fresh_files_are_kept(lake: Catalog) -> None:
    table = _table_with_history(lake)
    stray = _write(table, f"{table.location().rstrip('/')}/data/in-flight.parquet")
    result = clean_orphan_files(table)  # default window: 2880 minutes
    assert result.orphan_files == 0 and result.too_young_files == 1
    assert normalize_location(stray) in storage_files(table)
    # an explicit short window still protects a file written seconds ago
    assert clean_orphan_files(table, min_existing_time_minutes=5).deleted_files == 0
    with table.transaction() as tx:
        tx.set_properties({"clean-orphan-file.min-existing-time-minutes": "0"})
    assert clean_orphan_files(table, now=LATER).deleted_files == 1


def test_symlinks_are_never_followed_or_deleted(sqlite_catalog: Catalog, tmp_path: Path) -> None:
    table = _table_with_history(sqlite_catalog)
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.parquet").write_bytes(b"precious")
    (tmp_path / "lonely.parquet").write_bytes(b"precious")
    data_dir = Path(urlparse(table.location()).path) / "data"
    (data_dir / "linked-dir").symlink_to(outside, target_is_directory=True)
    (data_dir / "linked-file.parquet").symlink_to(tmp_path / "lonely.parquet")
    result = clean_orphan_files(table, now=LATER)
    assert result.orphan_files == 0
    assert (outside / "keep.parquet").read_bytes() == b"precious"
    assert (tmp_path / "lonely.parquet").read_bytes() == b"precious"
    assert (data_dir / "linked-file.parquet").is_symlink()


@pytest.mark.parametrize(
    ("location", "folder", "inside"),
    [
        ("s3://b/wh/orders/data/x.parquet", "s3://b/wh/orders/data", True),
        ("s3a://b/wh/orders/data/x.parquet", "s3://b/wh/orders/data", True),
        ("s3://b/wh/orders2/data/x.parquet", "s3://b/wh/orders", False),
        ("s3://b/wh/orders/data/../../orders2/data/x", "s3://b/wh/orders/data", False),
        ("s3://other/wh/orders/data/x.parquet", "s3://b/wh/orders/data", False),
        ("gs://b/wh/orders/data/x.parquet", "s3://b/wh/orders/data", False),
        ("file:/tmp/wh/orders/data/x", "file:///tmp/wh/orders/data", True),
        ("/tmp/wh/orders/data//a/./x", "file:///tmp/wh/orders/data", True),
        ("/tmp/wh/orders/data/../../orders/data", "file:///tmp/wh/orders/data", False),
        ("s3://b/wh/orders/data", "s3://b/wh/orders/data", False),
    ],
)
def test_location_guard(location: str, folder: str, inside: bool) -> None:
    assert is_under(normalize_location(location), normalize_location(folder)) is inside


def test_pyarrow_s3_listing(s3_server: Any, tmp_path: Path) -> None:
    """pyiceberg's default (pyarrow) FileIO on S3: listing and reference matching (dry run)."""
    catalog = make_catalog("s3", tmp_path, s3=s3_server)
    table = _table_with_history(catalog)
    stray = _write(table, f"{table.location().rstrip('/')}/data/sub/stray.parquet")
    result = clean_orphan_files(table, now=LATER, dry_run=True)
    assert result.listed_files == len(storage_files(table))
    assert result.orphan_files == 1 and result.orphan_paths_sample == [normalize_location(stray)]


def test_files_written_after_a_listing_are_seen(lake: Catalog, request: pytest.FixtureRequest) -> None:
    """A cleaning's listing leaves no stale directory listing behind in the table's filesystem.

    fsspec hands every user of the same options one filesystem instance, and s3fs answers ``info``
    from a cached listing of the parent folder: a file another process writes after the listing
    (a new manifest, a new ``metadata.json``) would then not exist for this process.
    """
    table = _table_with_history(lake)
    result = clean_orphan_files(table, now=LATER, dry_run=True)
    assert result.listed_files == len(storage_files(table))
    for folder in ("metadata", "data"):
        location = f"{table.location().rstrip('/')}/{folder}/written-elsewhere.bin"
        if location.startswith("file:"):
            Path(urlparse(location).path).write_bytes(b"12345")
        else:  # another process: its own filesystem instance, without a listings cache
            request.getfixturevalue("s3_server").s3fs().pipe(location.removeprefix("s3://"), b"12345")
        assert len(table.io.new_input(location)) == 5
    other = lake.load_table("ns.orders")
    other.append(id_v_rows([1000]))
    assert 1000 in read_table(other).column("id").to_pylist()


def test_concurrent_appends_lose_nothing(lake: Catalog) -> None:
    table = _table_with_history(lake)
    writer_table = lake.load_table("ns.orders")
    local = table.location().startswith("file:")
    stray = _write(table, f"{table.location().rstrip('/')}/data/old-stray.parquet")
    if local:
        old = time.time() - 3 * 86400
        os.utime(urlparse(stray).path, (old, old))
    deleted, appended = while_appending(
        writer_table,
        range(1000, 1040),
        lambda: clean_orphan_files(table, min_existing_time_minutes=1).deleted_files,
        repeat=4,
    )
    assert len(appended) >= 1
    table.refresh()
    ids = set(read_table(table).column("id").to_pylist())
    assert set(appended) <= ids
    for snapshot in table.snapshots():
        read_table(table, snapshot_id=snapshot.snapshot_id)  # every file of every snapshot is there
    assert deleted == (1 if local else 0)


def test_thousands_of_files_bounded_memory(sqlite_catalog: Catalog) -> None:
    import tracemalloc

    table = _table_with_history(sqlite_catalog)
    data_dir = Path(urlparse(table.location()).path) / "data"
    old = time.time() - 3 * 86400
    for part in range(30):
        folder = data_dir / f"part={part}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(100):
            path = folder / f"stray-{i}.parquet"
            path.write_bytes(b"x")
            os.utime(path, (old, old))
    referenced = reachable(table, [s.snapshot_id for s in table.snapshots()], live_only=False)
    tracemalloc.start()
    started = time.monotonic()
    result = clean_orphan_files(table, min_existing_time_minutes=60)
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.deleted_files == 3000 and result.failed_deletes == 0
    assert peak < 20 * 1024 * 1024, peak  # candidates are small records, not listings of everything
    assert elapsed < 30
    left = storage_files(table)
    assert referenced <= left and not any("stray-" in p for p in left)


def test_metadata_files_out_of_the_log_are_orphans(sqlite_catalog: Catalog) -> None:
    sqlite_catalog.create_namespace("ns")
    props = {"clean-orphan-file.enabled": "true", "write.metadata.previous-versions-max": "2"}
    table = sqlite_catalog.create_table("ns.m", schema=ID_V_SCHEMA, properties=props)
    for i in range(5):
        table.append(id_v_rows([i]))
    listed = {p for p in storage_files(table) if p.endswith(".metadata.json")}
    kept = {normalize_location(e.metadata_file) for e in table.metadata.metadata_log}
    kept.add(normalize_location(table.metadata_location))
    assert len(kept) == 3 and len(listed) == 6
    result = clean_orphan_files(table, now=LATER)
    assert result.deleted_files == 3
    assert {p for p in storage_files(table) if p.endswith(".metadata.json")} == kept
    assert set(read_table(table).column("id").to_pylist()) == set(range(5))


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("clean-orphan-file.min-existing-time-minutes", "-1"),
        ("clean-orphan-file.min-existing-time-minutes", "two days"),
        ("clean-orphan-file.enabled", "maybe"),
    ],
)
def test_bad_properties_raise(sqlite_catalog: Catalog, prop: str, value: str) -> None:
    from airflow_provider_amoro.maintenance import InvalidPropertyError

    table = new_table(sqlite_catalog, "ns.t", ID_V_SCHEMA, properties={prop: value})
    with pytest.raises(InvalidPropertyError) as info:
        clean_orphan_files(table, force=True)
    assert prop in str(info.value) and value in str(info.value)


def test_empty_old_local_folders_go(sqlite_catalog: Catalog) -> None:
    table = _table_with_history(sqlite_catalog)
    data_dir = Path(urlparse(table.location()).path) / "data"
    old = time.time() - 3 * 86400
    (data_dir / "day=1" / "hour=2").mkdir(parents=True)
    for folder in (data_dir / "day=1" / "hour=2", data_dir / "day=1"):
        os.utime(folder, (old, old))
    (data_dir / "day=9").mkdir()  # a writer's new partition folder: too young
    result = clean_orphan_files(table, min_existing_time_minutes=60)
    assert not (data_dir / "day=1").exists() and (data_dir / "day=9").is_dir() and data_dir.is_dir()
    assert result.removed_empty_folders == 2
    assert snapshot_hashes(table)  # the table still reads
