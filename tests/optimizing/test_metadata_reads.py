"""Per-process metadata cost on tables with a long commit history (issue #12).

A streaming writer commits one file per batch: one manifest per commit, never merged (pyiceberg's fast
append). The optimizer must read each manifest at most once per process (evaluate, plan, commit
validation and the post-commit evaluation share the parsed entries), and its REPLACE commit merges
small manifests (``commit.manifest.min-count-to-merge``, ``commit.manifest.target-size-bytes``) and
drops manifests left without live entries, so that the next process reads little. Rows are checked
against the table before with the independent reader.
"""

from __future__ import annotations

from typing import Any

import pytest
from builders import WIDE_SCHEMA, id_v_rows, new_table
from catalogs import on_catalogs
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from airflow_provider_amoro.optimizing.config import InvalidPropertyError
from airflow_provider_amoro.optimizing.manifests import MANIFEST_CACHE, ManifestCache
from airflow_provider_amoro.optimizing.optimize import optimize
from airflow_provider_amoro.optimizing.scan import live_files
from airflow_provider_amoro.testing.reader import content_hash, read_table

COMMITS = 24


def _history_table(catalog: Catalog, commits: int = COMMITS, **props: str) -> Any:
    """One data file per commit (``id`` 100*i .. 100*i+99), so one manifest per commit."""
    table = new_table(catalog, "db.t", WIDE_SCHEMA, properties=props)
    for i in range(commits):
        table.append(id_v_rows(range(100 * i, 100 * (i + 1))))
    return catalog.load_table("db.t")


def _manifests(table: Table) -> list[Any]:
    return list(table.current_snapshot().manifests(table.io))


def _seqs(table: Table) -> dict[str, tuple[int, int | None]]:
    files = live_files(table)
    return {f.path: (f.data_sequence_number, f.file_sequence_number) for f in files.data_files}


def test_one_process_reads_each_manifest_once_and_the_next_reads_few(catalog: Catalog) -> None:
    table = _history_table(catalog)
    before = content_hash(read_table(table))
    head = _manifests(table)
    assert len(head) == COMMITS
    MANIFEST_CACHE.clear()

    result = optimize(table, "minor")

    assert result.kind == "minor" and result.input_files == COMMITS
    assert content_hash(read_table(table)) == before
    old = {m.manifest_path for m in head}
    written = [m for m in _manifests(table) if m.manifest_path not in old]
    with_live = [m for m in written if m.added_files_count or m.existing_files_count]
    # evaluate, plan, commit validation and the evaluation after the commit: every manifest of the
    # history once, plus the ones the commit wrote that hold live files (before: 3 reads of the
    # whole history); the manifest of DELETED entries is known empty from the manifest list
    assert len(written) == 2 and len(with_live) == 1  # the added files; the removed files
    assert MANIFEST_CACHE.reads == len(head) + len(with_live)

    # The next process on a cold cache reads only the manifests of the new head.
    MANIFEST_CACHE.clear()
    assert optimize(table).kind is None
    assert MANIFEST_CACHE.reads == len(with_live) == 1


def test_replace_commit_merges_small_manifests_and_keeps_sequence_numbers(catalog: Catalog) -> None:
    # the filter limits the rewrite to the first 6 files: 18 single-file manifests stay untouched
    table = _history_table(
        catalog, **{"self-optimizing.filter": "id < 600", "commit.manifest.min-count-to-merge": "10"}
    )
    before = content_hash(read_table(table))
    seqs_before = _seqs(table)

    result = optimize(table, "minor")

    assert result.input_files == 6
    assert content_hash(read_table(table)) == before
    manifests = _manifests(table)
    # added files + DELETED entries + the 18 untouched manifests merged into one
    assert len(manifests) == 3
    assert sorted(m.existing_files_count for m in manifests) == [0, 0, COMMITS - 6]
    seqs_after = _seqs(table)
    untouched = {p: s for p, s in seqs_before.items() if p in seqs_after}
    assert len(untouched) == COMMITS - 6
    assert all(seqs_after[p] == s for p, s in untouched.items())  # sequence numbers kept exactly
    # the same answer when the manifests are read again from storage
    cached = live_files(table).data_files
    MANIFEST_CACHE.clear()  # a fresh process's view
    assert live_files(table).data_files == cached


def test_few_small_manifests_are_not_merged(catalog: Catalog) -> None:
    table = _history_table(catalog, **{"self-optimizing.filter": "id < 600"})  # default min count 100
    optimize(table, "minor")
    assert len(_manifests(table)) == 2 + COMMITS - 6


def test_a_manifest_left_without_live_entries_is_dropped(catalog: Catalog) -> None:
    table = _history_table(catalog, commits=14)
    optimize(table, "minor")
    deleted_only = [m for m in _manifests(table) if not m.has_added_files() and not m.has_existing_files()]
    assert len(deleted_only) == 1
    for i in range(14, 28):
        table.append(id_v_rows(range(100 * i, 100 * (i + 1))))
    before = content_hash(read_table(table))

    optimize(table, "minor")

    paths = {m.manifest_path for m in _manifests(table)}
    assert deleted_only[0].manifest_path not in paths
    assert content_hash(read_table(table)) == before


def test_a_bad_manifest_merge_property_names_the_key_and_commits_nothing(catalog: Catalog) -> None:
    table = _history_table(catalog, commits=13, **{"commit.manifest.min-count-to-merge": "many"})
    snapshot = table.current_snapshot().snapshot_id
    with pytest.raises(InvalidPropertyError, match=r"commit\.manifest\.min-count-to-merge='many'"):
        optimize(table, "minor")
    table.refresh()
    assert table.current_snapshot().snapshot_id == snapshot


def test_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache = ManifestCache(max_entries=3)
    cache.put("a", [1, 2])  # type: ignore[list-item]
    cache.put("b", [3])  # type: ignore[list-item]
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", [4])  # type: ignore[list-item]
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.size == 3
    cache.put("huge", [5, 6, 7, 8])  # type: ignore[list-item]
    assert cache.get("huge") is None and cache.size == 3


def _entry_tuple(e: Any) -> tuple[Any, ...]:
    df = e.data_file
    return (
        e.status,
        e.snapshot_id,
        e.sequence_number,
        e.file_sequence_number,
        df.file_path,
        df.content,
        df.spec_id,
        tuple(df.partition),
        df.record_count,
        df.file_size_in_bytes,
        df.lower_bounds,
        df.upper_bounds,
        df.null_value_counts,
        df.equality_ids,
    )


@pytest.mark.parametrize("fmt", ["1", "2"])
def test_cached_reader_reads_the_same_entries_as_pyiceberg(catalog: Catalog, fmt: str) -> None:
    from airflow_provider_amoro.iceberg_compat import read_manifest_entries
    from airflow_provider_amoro.testing.deletes import add_position_deletes, live_data_files

    table = _history_table(catalog, commits=14, **{"format-version": fmt})
    if fmt == "2":
        first = sorted(live_data_files(table), key=lambda f: f.file_path)[0]
        add_position_deletes(table, {first.file_path: [1, 2]})
    optimize(table, "minor")  # DELETED, EXISTING and ADDED entries, data and delete manifests
    table = catalog.load_table("db.t")
    snapshots = table.metadata.snapshots
    manifests = {m.manifest_path: m for s in snapshots for m in s.manifests(table.io)}
    assert len(manifests) >= 15
    for manifest in manifests.values():
        for discard in (True, False):
            ours = [_entry_tuple(e) for e in read_manifest_entries(table.io, manifest, discard)]
            theirs = [_entry_tuple(e) for e in manifest.fetch_manifest_entry(table.io, discard)]
            assert ours == theirs


def test_paused_gc_nests_and_restores_the_collector() -> None:
    import gc

    from airflow_provider_amoro.optimizing.manifests import paused_gc

    assert gc.isenabled()
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # a collector that was off stays off
    finally:
        gc.enable()


def test_commit_after_a_concurrent_append_reads_only_the_new_manifest(catalog: Catalog) -> None:
    from airflow_provider_amoro.optimizing.commit import commit
    from airflow_provider_amoro.optimizing.execute import execute
    from airflow_provider_amoro.optimizing.plan import plan

    table = _history_table(catalog, commits=14)
    MANIFEST_CACHE.clear()
    p = plan(table, "minor")
    results = [execute(table, task) for task in p.tasks]
    assert MANIFEST_CACHE.reads == 14
    other = catalog.load_table("db.t")  # another writer appends meanwhile
    other.append(id_v_rows(range(10_000, 10_100)))
    before = content_hash(read_table(catalog.load_table("db.t")))

    committed = commit(table, p, results)

    assert committed.snapshot_id is not None
    assert MANIFEST_CACHE.reads == 15  # the head's manifests: only the concurrent one is new
    assert content_hash(read_table(table)) == before


@on_catalogs("sqlite", "s3")
@pytest.mark.parametrize("threaded", [False, True], ids=["on-the-caller", "fetched-on-threads"])
def test_manifests_fetched_on_threads_decode_to_the_same_entries(
    catalog: Catalog, threaded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Manifests from slow storage are fetched on threads (a few ahead) and decoded in order on the
    caller; local ones on the caller only. Either way: pyiceberg's entries, in manifest order."""
    from airflow_provider_amoro.optimizing import manifests as module

    table = _history_table(catalog, commits=14)
    head = _manifests(table)
    monkeypatch.setattr(module, "SLOW_FETCH_S", -1.0 if threaded else 1e9)
    monkeypatch.setattr(module, "FETCH_AHEAD", 3)
    monkeypatch.setattr(module, "PROBE_FETCHES", 2)
    fetched_by: set[str] = set()
    fetch = module._fetch

    def spy(io: Any, path: str) -> bytes:
        import threading

        fetched_by.add(threading.current_thread().name)
        return fetch(io, path)

    monkeypatch.setattr(module, "_fetch", spy)
    cache = ManifestCache()
    got = cache.read_all(table.io, head)
    expected = [[_entry_tuple(e) for e in m.fetch_manifest_entry(table.io)] for m in head]
    assert [[_entry_tuple(e) for e in entries] for entries in got] == expected
    assert cache.reads == len(head)
    assert any(n.startswith("amoro-manifests") for n in fetched_by) == threaded


def test_a_missing_manifest_fails_the_threaded_read_with_its_error(
    sqlite_catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from airflow_provider_amoro.optimizing import manifests as module

    table = _history_table(sqlite_catalog, commits=14)
    head = _manifests(table)
    os.remove(head[9].manifest_path.removeprefix("file://"))
    monkeypatch.setattr(module, "SLOW_FETCH_S", -1.0)
    monkeypatch.setattr(module, "FETCH_AHEAD", 3)
    with pytest.raises(FileNotFoundError):
        ManifestCache().read_all(table.io, head)


def test_a_snapshot_s_manifest_list_is_read_once(catalog: Catalog) -> None:
    table = _history_table(catalog, commits=3)
    snapshot = table.current_snapshot()
    cache = ManifestCache()
    first = cache.manifest_list(table.io, snapshot)
    assert [m.manifest_path for m in first] == [m.manifest_path for m in _manifests(table)]
    table.io.delete(snapshot.manifest_list)  # a second read from storage would fail now
    again = cache.manifest_list(table.io, snapshot)
    assert [m.manifest_path for m in again] == [m.manifest_path for m in first]
    again.clear()  # callers get their own list
    assert len(cache.manifest_list(table.io, snapshot)) == 3
    cache.clear()
    with pytest.raises(FileNotFoundError):
        cache.manifest_list(table.io, snapshot)


def test_manifests_with_unusual_names_are_read_where_pyiceberg_parses_them(
    sqlite_catalog: Catalog, tmp_path: Any
) -> None:
    import shutil

    from pyiceberg.io.pyarrow import PyArrowFileIO

    from airflow_provider_amoro.optimizing.locations import native_location
    from airflow_provider_amoro.optimizing.manifests import _fetch

    table = _history_table(sqlite_catalog, commits=2)
    manifest = _manifests(table)[0]
    plain = manifest.manifest_path
    assert native_location(table.io, plain) is not None  # the usual name: its directory resolved once
    odd = tmp_path / "m 1%20#x.avro"
    shutil.copy(plain.removeprefix("file://"), odd)
    scheme, netloc, path = PyArrowFileIO.parse_location(str(odd), table.io.properties)
    assert native_location(table.io, str(odd)) == (table.io.fs_by_scheme(scheme, netloc), path)
    assert _fetch(table.io, str(odd)) == _fetch(table.io, plain)
    with pytest.raises(FileNotFoundError):
        _fetch(table.io, str(tmp_path / "missing-m0.avro"))


@on_catalogs("sqlite", "s3", "s3-fsspec")
def test_manifest_bytes_and_a_missing_manifest_on_every_storage(catalog: Catalog) -> None:
    from airflow_provider_amoro.optimizing.manifests import _fetch

    table = _history_table(catalog, commits=2)
    manifest = _manifests(table)[0]
    with table.io.new_input(manifest.manifest_path).open() as f:
        assert _fetch(table.io, manifest.manifest_path) == f.read()
    missing = manifest.manifest_path.rpartition("/")[0] + "/missing-m0.avro"
    with pytest.raises(FileNotFoundError):
        _fetch(table.io, missing)
