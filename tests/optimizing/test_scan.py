"""live_files: live data/delete files of a snapshot as FileRefs; DeleteFileIndex matches deletes fast."""

from __future__ import annotations

import random
import time
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.expressions.parser import parse
from pyiceberg.transforms import IdentityTransform

from airflow_provider_amoro.optimizing.model import FileRef, delete_applies
from airflow_provider_amoro.optimizing.scan import DeleteFileIndex, live_files
from airflow_provider_amoro.testing.deletes import add_equality_deletes, add_position_deletes

from ._tables import append_many, make_table, rows


def test_empty_table_has_no_files(catalog: Catalog) -> None:
    table = make_table(catalog)
    files = live_files(table)
    assert files.snapshot_id is None
    assert files.data_files == [] and files.delete_files == []


def test_matches_pyiceberg_scan_and_time_travel(catalog: Catalog) -> None:
    table = make_table(catalog, spec="identity")
    append_many(table, 3, cats=("a", "b"))
    first = table.current_snapshot()
    append_many(table, 2, cats=("c",))
    table.delete("cat = 'a'")  # copy-on-write: removes a-files
    files = live_files(table)
    expected = {t.file.file_path: t.file for t in table.scan().plan_files()}
    assert {f.path for f in files.data_files} == set(expected)
    for f in files.data_files:
        df = expected[f.path]
        assert (f.size_bytes, f.record_count, f.spec_id) == (df.file_size_in_bytes, df.record_count, 0)
        assert f.partition == [df.partition[0]]
        assert f.content == "data"
        assert f.data_sequence_number >= 1
    assert files.snapshot_id == table.current_snapshot().snapshot_id
    assert files.sequence_number == table.current_snapshot().sequence_number
    old = live_files(table, first.snapshot_id)
    assert len(old.data_files) == 6
    assert {tuple(f.partition) for f in old.data_files} == {("a",), ("b",)}
    assert max(f.data_sequence_number for f in old.data_files) == first.sequence_number
    with pytest.raises(ValueError, match="not a snapshot"):
        live_files(table, 123456789)


def test_v1_table_sequence_numbers_are_zero(sqlite_catalog: Catalog) -> None:
    table = make_table(sqlite_catalog, format_version=1)
    append_many(table, 2)
    files = live_files(table)
    assert len(files.data_files) == 2
    assert {f.data_sequence_number for f in files.data_files} == {0}
    assert files.format_version == 1


def test_evolved_spec_files_keep_their_spec_and_path(catalog: Catalog) -> None:
    table = make_table(catalog, spec="unpartitioned")
    append_many(table, 2)
    with table.update_spec() as update:
        update.add_field("cat", IdentityTransform(), "cat")
    append_many(table, 2, cats=("x", "y"))
    files = live_files(table)
    by_spec: dict[int, list[FileRef]] = {}
    for f in files.data_files:
        by_spec.setdefault(f.spec_id, []).append(f)
    assert sorted((k, len(v)) for k, v in by_spec.items()) == [(0, 2), (1, 4)]
    assert {files.partition_path(1, f.partition) for f in by_spec[1]} == {"cat=x", "cat=y"}
    assert {files.partition_path(0, f.partition) for f in by_spec[0]} == {""}


def test_day_partition_path_is_human(sqlite_catalog: Catalog) -> None:
    table = make_table(sqlite_catalog, spec="day")
    table.append(rows(0, 4, days=2))
    files = live_files(table)
    assert {files.partition_path(f.spec_id, f.partition) for f in files.data_files} == {
        "day_day=2024-01-01",
        "day_day=2024-01-02",
    }


def test_delete_files_are_listed_with_sequence_numbers(catalog: Catalog) -> None:
    table = make_table(catalog, spec="identity")
    append_many(table, 2, cats=("a", "b"))
    data = live_files(table).data_files
    a_file = next(f for f in data if f.partition == ["a"])
    table = add_position_deletes(table, {a_file.path: [0]})
    table = add_equality_deletes(table, rows(1, 1, cats=("a", "b")), ["id"])
    files = live_files(table)
    pos = [f for f in files.delete_files if f.content == "position_deletes"]
    eq = [f for f in files.delete_files if f.content == "equality_deletes"]
    assert len(pos) == 1 and len(eq) == 1
    assert pos[0].partition == ["a"] and pos[0].record_count == 1
    assert pos[0].referenced_data_file == a_file.path  # one data file: file-scoped by its bounds
    assert eq[0].equality_ids == [1]
    assert eq[0].data_sequence_number == table.current_snapshot().sequence_number
    assert pos[0].data_sequence_number < eq[0].data_sequence_number
    index = files.delete_index()
    assert index.for_data_file(a_file) == [pos[0]]  # eq delete is in partition b (id 1 -> cat b)
    b_files = [f for f in files.data_files if f.partition == ["b"]]
    assert all(index.for_data_file(f) == [eq[0]] for f in b_files)
    assert index.for_data_files(files.data_files) == sorted([pos[0], eq[0]], key=lambda f: f.path)


def test_filter_prunes_by_partition_and_metrics(catalog: Catalog) -> None:
    table = make_table(catalog, spec="identity")
    append_many(table, 3, cats=("a", "b"))
    everything = live_files(table)
    assert not everything.filtered
    by_partition = live_files(table, row_filter=parse("cat = 'a'"))
    assert by_partition.filtered
    assert {tuple(f.partition) for f in by_partition.data_files} == {("a",)}
    by_metrics = live_files(table, row_filter=parse("id < 10"))  # only the first append's files
    assert len(by_metrics.data_files) == 2
    assert len(everything.data_files) == 6


def _ref(path: str, content: str, seq: int, part: list[Any], spec: int = 0, **kw: Any) -> FileRef:
    return FileRef(path, content, 100, 10, spec, part, seq, seq, **kw)  # type: ignore[arg-type]


def test_delete_index_agrees_with_delete_applies() -> None:
    rng = random.Random(7)
    data = [
        _ref(f"d{i}", "data", rng.randint(1, 20), [rng.randint(0, 3)], rng.randint(0, 1)) for i in range(300)
    ]
    deletes = []
    for i in range(200):
        content = rng.choice(["position_deletes", "equality_deletes"])
        part = [] if rng.random() < 0.1 else [rng.randint(0, 3)]
        ref = rng.choice(data).path if content == "position_deletes" and rng.random() < 0.3 else None
        deletes.append(
            _ref(f"x{i}", content, rng.randint(1, 20), part, rng.randint(0, 1), referenced_data_file=ref)
        )
    index = DeleteFileIndex(deletes)
    for d in data:
        expected = sorted(x.path for x in deletes if delete_applies(x, d))
        assert sorted(x.path for x in index.for_data_file(d)) == expected
        pos_files, pos_records, eq_files = index.summary(d)
        applying = [x for x in deletes if delete_applies(x, d)]
        assert pos_files == sum(1 for x in applying if x.content == "position_deletes")
        assert pos_records == sum(x.record_count for x in applying if x.content == "position_deletes")
        assert eq_files == sum(1 for x in applying if x.content == "equality_deletes")
    for group in (data[:5], data[100:180], data):
        expected = sorted({x.path for x in deletes if any(delete_applies(x, d) for d in group)})
        assert [x.path for x in index.for_data_files(group)] == expected
    dangling = {x.path for x in deletes if not any(delete_applies(x, d) for d in data)}
    assert {x.path for x in index.dangling(data)} == dangling


def test_delete_index_is_fast_on_many_files() -> None:
    data = [_ref(f"d{i}", "data", i % 1000 + 1, [i % 50]) for i in range(100_000)]
    deletes = [_ref(f"e{i}", "equality_deletes", i % 1000 + 2, [i % 50]) for i in range(20_000)]
    start = time.process_time()  # CPU seconds, not disturbed by other load
    index = DeleteFileIndex(deletes)
    total = sum(index.summary(d)[2] for d in data)
    elapsed = time.process_time() - start
    assert total > 0
    assert elapsed < 5, elapsed


def test_scan_streams_many_files(sqlite_catalog: Catalog, tmp_path: Any) -> None:
    """20,000 data files in 4 manifests are listed in a few seconds (manifests written directly)."""
    from ._synthetic import add_synthetic_files

    table = make_table(sqlite_catalog, spec="identity")
    table = add_synthetic_files(table, 20_000, per_commit=5_000, partitions=40)
    start = time.process_time()  # CPU seconds, not disturbed by other load
    files = live_files(table)
    elapsed = time.process_time() - start
    assert len(files.data_files) == 20_000
    assert len({id(f.partition) for f in files.data_files}) == 40  # partition tuples are shared
    assert elapsed < 5, elapsed


def test_rows_helper_is_sane() -> None:
    assert rows(0, 3).num_rows == 3
    assert isinstance(rows(0, 1), pa.Table)


def test_partition_scoped_position_delete_may_apply_to_every_file(sqlite_catalog: Catalog) -> None:
    table = make_table(sqlite_catalog, spec="identity")
    append_many(table, 3, cats=("a",))
    data = sorted(live_files(table).data_files, key=lambda f: f.path)
    table = add_position_deletes(table, {data[0].path: [0], data[1].path: [0]})  # one file, two targets
    files = live_files(table)
    (d,) = files.delete_files
    assert d.referenced_data_file is None
    index = files.delete_index()
    by_path = {f.path: f for f in files.data_files}
    # "may apply" to the two files inside its file_path bounds, not to the third (issue #10)
    assert [index.for_data_file(by_path[f.path]) for f in data] == [[d], [d], []]
    assert index.dangling(files.data_files) == []
