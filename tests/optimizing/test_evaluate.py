"""evaluate/classify: Amoro's file classes, minor/major/full triggers, cost, health score, reasons."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform

from airflow_provider_amoro.optimizing import OptimizingConfig, evaluate
from airflow_provider_amoro.optimizing.evaluate import FILE_COST_BYTES, classify, health_score
from airflow_provider_amoro.optimizing.model import FileRef
from airflow_provider_amoro.optimizing.scan import live_files
from airflow_provider_amoro.testing.deletes import (
    add_equality_deletes,
    add_position_deletes,
    upsert_with_equality_deletes,
)

from ._tables import append_many, make_table, rows

MB = 1024 * 1024
CFG = OptimizingConfig()  # target 128 MB: fragments <= 16 MB, undersized <= 96 MB
NOW = 1_700_000_000_000
HOUR = 3_600_000


def data(
    name: str, size_mb: float, seq: int = 1, part: str | None = "a", spec: int = 0, records: int = 1000
) -> FileRef:
    return FileRef(
        f"s3://b/{name}", "data", int(size_mb * MB), records, spec, [] if part is None else [part], seq, seq
    )


def pos(
    name: str, seq: int, part: str | None = "a", records: int = 1, ref: str | None = None, spec: int = 0
) -> FileRef:
    return FileRef(
        f"s3://b/{name}",
        "position_deletes",
        1000,
        records,
        spec,
        [] if part is None else [part],
        seq,
        seq,
        referenced_data_file=None if ref is None else f"s3://b/{ref}",
    )


def eq(name: str, seq: int, part: str | None = "a", records: int = 1, spec: int = 0) -> FileRef:
    return FileRef(
        f"s3://b/{name}",
        "equality_deletes",
        1000,
        records,
        spec,
        [] if part is None else [part],
        seq,
        seq,
        equality_ids=[1],
    )


def fragments(n: int, part: str = "a", spec: int = 0) -> list[FileRef]:
    return [data(f"{part}-{spec}-f{i}", 1, part=part, spec=spec) for i in range(n)]


# ----------------------------------------------------------------------------- pure classification


def test_fragment_count_triggers_minor() -> None:
    ev = classify(fragments(12), [], CFG, now_ms=NOW, last_minor_ms=NOW)
    assert ev.kind == "minor"
    (p,) = ev.partitions
    assert (p.fragment_files, p.undersized_files, p.segment_files) == (12, 0, 0)
    assert p.fragment_bytes == 12 * MB
    assert any(
        "unpartitioned" not in r and "12 fragments >= self-optimizing.minor.trigger.file-count 12" in r
        for r in ev.reasons
    )


def test_below_file_count_needs_the_interval() -> None:
    assert classify(fragments(11), [], CFG, now_ms=NOW, last_minor_ms=NOW - HOUR + 1).kind is None
    assert (
        classify(fragments(11), [], CFG, now_ms=NOW, last_minor_ms=NOW - HOUR).kind is None
    )  # not > interval
    assert classify(fragments(11), [], CFG, now_ms=NOW, last_minor_ms=NOW - HOUR - 1).kind == "minor"
    ev = classify(fragments(2), [], CFG, now_ms=NOW, last_minor_ms=None)  # never optimized
    assert ev.kind == "minor"
    assert "never optimized" in " ".join(ev.reasons)
    assert classify(fragments(1), [], CFG, now_ms=NOW).kind is None  # a single fragment never
    never = CFG.replace(minor_trigger_interval_ms=-1)
    assert classify(fragments(11), [], never, now_ms=NOW).kind is None


def test_equality_deletes_count_toward_minor() -> None:
    files = fragments(10)
    deletes = [eq("e1", 2), eq("e2", 3)]
    ev = classify(files, deletes, CFG, now_ms=NOW, last_minor_ms=NOW)
    assert ev.kind == "minor"
    assert ev.partitions[0].eq_delete_files == 2
    assert ev.reasons == [
        "partition 0=a: 10 fragments + 2 equality-delete files = 12 "
        ">= self-optimizing.minor.trigger.file-count 12"
    ]
    assert classify(files, deletes[:1], CFG, now_ms=NOW, last_minor_ms=NOW).kind is None


def test_segment_over_duplicate_ratio_is_major() -> None:
    seg = data("seg", 120, seq=1, records=1000)
    ev = classify([seg], [pos("p1", 2, records=101, ref="seg")], CFG, now_ms=NOW, last_minor_ms=NOW)
    assert ev.kind == "major"
    p = ev.partitions[0]
    assert (p.segment_files, p.rewrite_segment_files, p.rewrite_pos_segment_files) == (1, 1, 0)
    assert "duplicate-ratio" in " ".join(ev.reasons)
    # exactly at the ratio: not over it, one position file: nothing to do
    ev = classify([seg], [pos("p1", 2, records=100, ref="seg")], CFG, now_ms=NOW, last_minor_ms=NOW)
    assert ev.kind is None
    assert ev.partitions[0].rewrite_pos_segment_files == 0


def test_two_position_delete_files_on_a_segment_is_minor_rewrite_pos() -> None:
    seg = data("seg", 120, seq=1, records=1000)
    deletes = [pos("p1", 2, ref="seg"), pos("p2", 3, ref="seg")]
    ev = classify([seg], deletes, CFG, now_ms=NOW, last_minor_ms=NOW)
    assert ev.kind == "minor"
    p = ev.partitions[0]
    assert (p.rewrite_pos_segment_files, p.pos_delete_files, p.pos_delete_records) == (1, 2, 2)
    assert ">= 2 position-delete files" in " ".join(ev.reasons)


def test_equality_delete_on_segment_needs_rewrite_pos_but_does_not_trigger_alone() -> None:
    seg = data("seg", 120, seq=1)
    ev = classify([seg], [eq("e1", 2)], CFG, now_ms=NOW, last_minor_ms=NOW)
    assert ev.kind is None
    assert ev.partitions[0].rewrite_pos_segment_files == 1
    assert ev.partitions[0].rewrite_pos_segment_bytes == 120 * MB


def test_undersized_segments_that_add_up_are_major() -> None:
    under = [data(f"u{i}", 40) for i in range(4)]  # 160 MB >= 128 MB, 40 + 40 <= 128
    ev = classify(under, [], CFG, now_ms=NOW, last_minor_ms=NOW)
    assert ev.kind == "major"
    assert ev.partitions[0].undersized_files == 4
    assert "undersized segments add up to 160.0 MB >= target-size 128.0 MB" in " ".join(ev.reasons)
    big = [data(f"u{i}", 90) for i in range(2)]  # 180 MB but 90 + 90 > 128: do not fit together
    assert classify(big, [], CFG, now_ms=NOW, last_minor_ms=NOW).kind is None
    small = [data(f"u{i}", 40) for i in range(3)]  # 120 MB < 128 MB
    assert classify(small, [], CFG, now_ms=NOW, last_minor_ms=NOW).kind is None


def test_full_by_interval_only() -> None:
    files = [data("u1", 40), data("u2", 40), data("t1", 120)]
    assert classify(files, [], CFG, now_ms=NOW, last_minor_ms=NOW).kind is None  # -1: never
    daily = CFG.replace(full_trigger_interval_ms=24 * HOUR)
    assert classify(files, [], daily, now_ms=NOW, last_minor_ms=NOW, last_full_ms=None).kind == "full"
    assert classify(files, [], daily, now_ms=NOW, last_minor_ms=NOW, last_full_ms=NOW - HOUR).kind is None
    ev = classify(files, [], daily, now_ms=NOW, last_minor_ms=NOW, last_full_ms=NOW - 25 * HOUR)
    assert ev.kind == "full"
    assert "self-optimizing.full.trigger.interval 86400000 ms passed" in " ".join(ev.reasons)
    # nothing to improve: a single target-size file
    assert classify([data("t1", 120)], [], daily, now_ms=NOW).kind is None


def test_table_kind_is_highest_partition_kind_and_specs_are_separate() -> None:
    files = fragments(12, "a") + [data(f"u{i}", 40, part="b") for i in range(4)] + fragments(5, "a", spec=1)
    ev = classify(files, [], CFG, now_ms=NOW, last_minor_ms=NOW)
    assert ev.kind == "major"
    kinds = {(p.spec_id, p.path): p.kind for p in ev.partitions}
    assert kinds == {(0, "0=a"): "minor", (0, "0=b"): "major", (1, "0=a"): None}
    assert [p.cost for p in ev.partitions] == sorted((p.cost for p in ev.partitions), reverse=True)
    assert ev.cost == sum(p.cost for p in ev.partitions if p.kind)


def test_cost_formula() -> None:
    files = [
        data("f1", 1),
        data("f2", 2),  # fragments: 3 MB
        data("u1", 40),  # undersized
        data("r1", 100, records=1000),  # rewrite segment (pos records 200 > 100)
        data("rp", 120, records=1000),  # rewrite-pos segment (2 small position files)
        data("t", 120, seq=9),  # target-size segment, no deletes apply (newer)
    ]
    deletes = [
        pos("p1", 2, records=200, ref="r1"),
        pos("p2", 2, records=1, ref="rp"),
        pos("p3", 3, records=1, ref="rp"),
        eq("e1", 2),
    ]
    ev = classify(files, deletes, CFG, now_ms=NOW, last_minor_ms=NOW)
    (p,) = ev.partitions
    assert (p.fragment_files, p.undersized_files, p.segment_files) == (2, 1, 3)
    assert (p.rewrite_segment_files, p.rewrite_pos_segment_files) == (1, 1)
    assert (p.pos_delete_files, p.eq_delete_files) == (3, 1)
    # the equality delete (seq 2) applies to every file but t (seq 9); u1 stays undersized
    # (not a rewrite-pos segment), rp is the rewrite-pos segment, r1 the rewrite segment
    cost = (
        (3 * MB + 100 * MB + 40 * MB) * 2
        + 120 * MB // 10
        + 3 * 1000
        + 1 * 1000
        + FILE_COST_BYTES * (2 + 1 + 1 + 1 + 3 + 1)
    )
    assert p.cost == cost
    assert ev.kind == "major"


def test_dangling_deletes_count_but_do_not_trigger() -> None:
    files = [data("seg", 120, seq=5)]
    deletes = [eq("e-old", 5), pos("p-old", 4), pos("p-other", 9, part="zz"), eq(f"e{0}", 3)]
    ev = classify(files, deletes, CFG, now_ms=NOW)
    assert ev.kind is None
    assert ev.delete_files == 4
    assert ev.dangling_delete_files == 4
    assert ev.partitions[0].eq_delete_files == 0
    assert ev.health_score == 100
    assert any("dangling" in r for r in ev.reasons)


def test_unpartitioned_deletes_apply_to_every_partition() -> None:
    files = fragments(6, "a") + fragments(6, "b")
    deletes = [eq(f"g{i}", 2, part=None) for i in range(6)]
    ev = classify(files, deletes, CFG, now_ms=NOW, last_minor_ms=NOW)
    assert [p.eq_delete_files for p in ev.partitions] == [6, 6]
    assert ev.kind == "minor"  # 6 fragments + 6 global equality deletes per partition


def test_disabled_table_has_no_kind() -> None:
    ev = classify(fragments(20), [], CFG.replace(enabled=False), now_ms=NOW)
    assert ev.kind is None
    assert ev.reasons[0].startswith("self-optimizing.enabled=false")
    assert ev.partitions[0].fragment_files == 20


def test_empty_input() -> None:
    ev = classify([], [], CFG, now_ms=NOW)
    assert ev.kind is None and ev.health_score == 100 and ev.partitions == []
    assert ev.avg_file_size == 0
    assert "no live data files" in ev.reasons


def test_health_score_bounds_and_weights() -> None:
    def score(**kw: Any) -> int:
        base = dict(
            data_files=10,
            data_bytes=10 * 128 * MB,
            records=10_000,
            pos_delete_files=0,
            pos_delete_records=0,
            eq_delete_files=0,
            eq_delete_records=0,
            config=CFG,
        )
        base.update(kw)
        return health_score(**base)  # type: ignore[arg-type]

    assert score() == 100
    assert score(data_files=1, data_bytes=1000) == 100  # one small file in a tiny table is fine
    assert score(data_files=100, data_bytes=100 * MB) == 60  # 99 of 100 files are excess -> -39.6
    assert score(eq_delete_files=100, eq_delete_records=10_000) == 60
    assert score(pos_delete_files=100, pos_delete_records=10_000) == 80
    worst = score(
        data_files=1000,
        data_bytes=1000,
        eq_delete_files=50,
        eq_delete_records=5000,
        pos_delete_files=50,
        pos_delete_records=5000,
    )
    assert worst == 0
    assert 60 < score(eq_delete_files=1, eq_delete_records=10) < 100


def test_to_dict_is_json_safe() -> None:
    files = [*fragments(12), data("seg", 120, seq=1)]
    ev = classify(files, [pos("p1", 2, ref="seg"), pos("p2", 2, ref="seg")], CFG, now_ms=NOW)
    d = json.loads(json.dumps(ev.to_dict()))
    assert d["kind"] == "minor"
    assert d["partitions"][0]["fragment_files"] == 12
    assert d["partitions"][0]["rewrite_pos_segment_files"] == 1
    assert "files" not in d["partitions"][0]
    assert d["properties"]["self-optimizing.target-size"] == "134217728"
    assert d["data_files"] == 13 and d["delete_files"] == 2
    assert d["totals"]["data_files"] == 13 and d["totals"]["pending_partitions"] == 1


def test_classify_100k_files_is_fast() -> None:
    files = [data(f"d{i}", 1 + (i % 150), seq=i % 500 + 1, part=f"p{i % 200}") for i in range(100_000)]
    deletes = [eq(f"e{i}", i % 500 + 2, part=f"p{i % 200}") for i in range(5_000)]
    deletes += [pos(f"x{i}", i % 500 + 2, part=f"p{i % 200}", ref=f"d{i * 7}") for i in range(5_000)]
    start = time.process_time()  # CPU seconds, not disturbed by other load
    ev = classify(files, deletes, CFG, now_ms=NOW)
    elapsed = time.process_time() - start
    assert ev.data_files == 100_000 and len(ev.partitions) == 200
    assert ev.kind is not None
    assert elapsed < 5, elapsed


# ----------------------------------------------------------------------------- real tables

SMALL = {
    "self-optimizing.target-size": "64000",  # fragments <= 8000 B, undersized <= 48000 B
    "self-optimizing.max-task-size-bytes": "64000",
}


def test_real_identity_table_minor_by_file_count(catalog: Catalog) -> None:
    table = make_table(catalog, spec="identity", properties=SMALL)
    append_many(table, 14, cats=("a", "b"))  # 14 fragments in each of cat=a, cat=b
    table.append(rows(10_000, 3, cats=("c",)))
    ev = evaluate(table, now=NOW, last_minor_ms=NOW)
    assert ev.kind == "minor"
    paths = {p.path: p for p in ev.partitions}
    assert paths["cat=a"].fragment_files == 14 and paths["cat=a"].kind == "minor"
    assert paths["cat=c"].fragment_files == 1 and paths["cat=c"].kind is None
    assert "partition cat=a: 14 fragments >= self-optimizing.minor.trigger.file-count 12" in ev.reasons
    assert ev.data_files == 29
    assert ev.snapshot_id == table.current_snapshot().snapshot_id
    assert ev.health_score < 70


def test_real_interval_uses_now(sqlite_catalog: Catalog) -> None:
    table = make_table(sqlite_catalog, spec="day", properties=SMALL)
    append_many(table, 3, days=1)
    assert evaluate(table, now=NOW, last_minor_ms=NOW - 1000).kind is None
    assert evaluate(table, now=NOW, last_minor_ms=NOW - HOUR - 1).kind == "minor"
    ev = evaluate(table, now=NOW)
    assert ev.kind == "minor"
    assert ev.partitions[0].path == "day_day=2024-01-01"


def test_real_bucket_undersized_major_and_full(sqlite_catalog: Catalog) -> None:
    props = {**SMALL, "self-optimizing.full.trigger.interval": "86400000"}
    table = make_table(sqlite_catalog, spec="unpartitioned", properties=props)
    for i in range(3):
        table.append(rows(i * 8000, 6000))  # ~30 KB each: undersized (8000 < size <= 48000)
    ev = evaluate(table, now=NOW, last_minor_ms=NOW, last_full_ms=NOW)
    assert ev.kind == "major", ev.reasons
    assert ev.partitions[0].undersized_files == 3
    assert evaluate(table, now=NOW, last_minor_ms=NOW, last_full_ms=NOW - 86_400_001).kind == "full"
    assert evaluate(table, now=NOW, last_minor_ms=NOW).kind == "full"  # never fully optimized


def test_real_bucket_partitions(catalog: Catalog) -> None:
    table = make_table(catalog, spec="bucket", properties=SMALL)
    append_many(table, 4, n=40)
    ev = evaluate(table, now=NOW, last_minor_ms=NOW)
    assert sorted(p.path for p in ev.partitions) == [f"id_bucket={i}" for i in range(4)]
    assert sum(p.data_files for p in ev.partitions) == ev.data_files


def test_real_evolved_spec_partitions_per_spec(catalog: Catalog) -> None:
    table = make_table(catalog, spec="unpartitioned", properties=SMALL)
    append_many(table, 12)
    with table.update_spec() as update:
        update.add_field("cat", IdentityTransform(), "cat")
    append_many(table, 3, cats=("a",))
    ev = evaluate(table, now=NOW, last_minor_ms=NOW)
    by = {(p.spec_id, p.path): p for p in ev.partitions}
    assert set(by) == {(0, ""), (1, "cat=a")}
    assert by[(0, "")].fragment_files == 12 and by[(0, "")].kind == "minor"
    assert by[(1, "cat=a")].fragment_files == 3 and by[(1, "cat=a")].kind is None
    assert "unpartitioned: 12 fragments" in " ".join(ev.reasons)


def test_real_v1_table(sqlite_catalog: Catalog) -> None:
    table = make_table(sqlite_catalog, spec="identity", properties=SMALL, format_version=1)
    append_many(table, 12)
    ev = evaluate(table, now=NOW, last_minor_ms=NOW)
    assert ev.kind == "minor"
    assert ev.sequence_number == 0


def test_real_filter_limits_partitions(catalog: Catalog) -> None:
    props = {**SMALL, "self-optimizing.filter": "cat = 'b'"}
    table = make_table(catalog, spec="identity", properties=props)
    append_many(table, 13, cats=("a", "b"))
    ev = evaluate(table, now=NOW, last_minor_ms=NOW)
    assert [p.path for p in ev.partitions] == ["cat=b"]
    assert ev.kind == "minor"
    assert "self-optimizing.filter" in ev.reasons[0]


def test_real_disabled(sqlite_catalog: Catalog) -> None:
    table = make_table(sqlite_catalog, properties={**SMALL, "self-optimizing.enabled": "false"})
    append_many(table, 13)
    ev = evaluate(table, now=NOW)
    assert ev.kind is None
    assert "self-optimizing.enabled=false" in ev.reasons[0]


def test_real_bad_property_raises(sqlite_catalog: Catalog) -> None:
    from airflow_provider_amoro.optimizing import InvalidPropertyError

    table = make_table(sqlite_catalog, properties={"self-optimizing.fragment-ratio": "0"})
    with pytest.raises(InvalidPropertyError, match="fragment-ratio"):
        evaluate(table)
    with pytest.raises(InvalidPropertyError, match="nope"):
        evaluate(table, config=OptimizingConfig(filter="nope > 1"))


def test_real_empty_table(catalog: Catalog) -> None:
    table = make_table(catalog)
    ev = evaluate(table, now=NOW)
    assert ev.kind is None and ev.snapshot_id is None and ev.health_score == 100


def _segment_table(catalog: Catalog, n_segments: int = 1) -> Table:
    table = make_table(catalog, spec="identity", properties=SMALL)
    for i in range(n_segments):
        table.append(rows(i * 20_000, 10_000))  # ~51 KB: target-size segment (> 48000 B)
    return table


def test_real_position_deletes_over_ratio_is_major(catalog: Catalog) -> None:
    table = _segment_table(catalog)
    (seg,) = live_files(table).data_files
    assert seg.size_bytes > 48000
    table = add_position_deletes(table, {seg.path: list(range(1001))})  # > 10% of 10,000 rows
    ev = evaluate(table, now=NOW, last_minor_ms=NOW)
    assert ev.kind == "major"
    assert ev.partitions[0].rewrite_segment_files == 1
    assert ev.partitions[0].pos_delete_records == 1001


def test_real_two_position_delete_files_is_minor(catalog: Catalog) -> None:
    table = _segment_table(catalog)
    (seg,) = live_files(table).data_files
    table = add_position_deletes(table, {seg.path: [1, 2]})
    assert evaluate(table, now=NOW, last_minor_ms=NOW).kind is None
    table = add_position_deletes(table, {seg.path: [3]})
    ev = evaluate(table, now=NOW, last_minor_ms=NOW)
    assert ev.kind == "minor"
    p = ev.partitions[0]
    assert (p.rewrite_pos_segment_files, p.pos_delete_files, p.pos_delete_records) == (1, 2, 3)
    assert ev.health_score < 100


def test_real_equality_deletes_and_upserts(catalog: Catalog) -> None:
    table = make_table(catalog, spec="identity", properties=SMALL)
    append_many(table, 3)
    for i in range(5):
        table = upsert_with_equality_deletes(table, rows(i, 1), ["id"])
    ev = evaluate(table, now=NOW, last_minor_ms=NOW)
    p = ev.partitions[0]
    assert p.fragment_files == 8
    assert p.eq_delete_files == 5  # each upsert's delete hides older rows of the partition
    assert ev.kind == "minor"  # 8 fragments + 5 equality deletes >= 12
    assert ev.health_score < 70
    table2 = add_equality_deletes(table, rows(0, 1), ["id"])
    assert evaluate(table2, now=NOW, last_minor_ms=NOW).partitions[0].eq_delete_files == 6
