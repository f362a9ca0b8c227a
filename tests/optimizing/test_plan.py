"""plan: kinds, bin-packing bounds, delete attachment, input cap, JSON round trip, real tables."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyiceberg.transforms import IdentityTransform

from airflow_provider_amoro.optimizing import OptimizingConfig, OptimizingPlan, plan
from airflow_provider_amoro.optimizing.evaluate import classify
from airflow_provider_amoro.optimizing.model import FileRef, RewriteTask, delete_applies
from airflow_provider_amoro.optimizing.plan import bin_pack, plan_evaluation
from airflow_provider_amoro.optimizing.scan import live_files
from airflow_provider_amoro.testing.deletes import add_position_deletes, upsert_with_equality_deletes

from ._tables import append_many, make_table, rows
from .test_evaluate import CFG, MB, NOW, SMALL, data, eq, fragments, pos


def _plan(
    files: list[FileRef], deletes: list[FileRef], kind: Any = None, cfg: OptimizingConfig = CFG, **kw: Any
) -> OptimizingPlan:
    cap = kw.pop("max_input_bytes", None)
    max_tasks = kw.pop("max_tasks", None)
    ev = classify(files, deletes, cfg, now_ms=NOW, last_minor_ms=kw.pop("last_minor_ms", NOW), **kw)
    return plan_evaluation(ev, kind, table_name="db.t", max_input_bytes=cap, max_tasks=max_tasks)


def _check_invariants(p: OptimizingPlan, all_deletes: list[FileRef], cap: int) -> None:
    seen: set[str] = set()
    assert [t.task_id for t in p.tasks] == list(range(len(p.tasks)))
    for t in p.tasks:
        files = [*t.rewrite_data_files, *t.rewrite_pos_data_files]
        assert files, t
        # one partition of one spec per task
        assert {(f.spec_id, tuple(f.partition)) for f in files} == {(t.spec_id, tuple(t.partition))}
        # bin-packing bound (a single oversized file may stand alone)
        for group in (t.rewrite_data_files, t.rewrite_pos_data_files):
            assert sum(f.size_bytes for f in group) <= cap or len(group) == 1
        # no single-file task with nothing to fix
        assert not (len(t.rewrite_data_files) == 1 and not t.rewrite_pos_data_files and not t.delete_files)
        # exactly the deletes that apply to one of its files
        expected = sorted({d.path for d in all_deletes if any(delete_applies(d, f) for f in files)})
        assert [d.path for d in t.delete_files] == expected
        for f in files:
            assert f.path not in seen, "a file in two tasks"
            seen.add(f.path)


def test_bin_pack_bounds_and_determinism() -> None:
    rng = random.Random(3)
    files = [data(f"f{i}", rng.uniform(0.1, 60)) for i in range(500)] + [data("huge", 300)]
    cap = 128 * MB
    bins = bin_pack(files, cap)
    assert sorted(f.path for b in bins for f in b) == sorted(f.path for f in files)
    assert all(sum(f.size_bytes for f in b) <= cap for b in bins if len(b) > 1)
    assert [b for b in bins if any(f.path.endswith("huge") for f in b)] == [[files[-1]]]
    lower_bound = -(-sum(f.size_bytes for f in files[:-1]) // cap)
    assert len(bins) - 1 <= lower_bound * 1.25  # close to optimal
    shuffled = files[:]
    rng.shuffle(shuffled)
    assert bin_pack(shuffled, cap) == bins
    with pytest.raises(ValueError):
        bin_pack(files, 0)


def test_minor_rewrites_fragments_and_merges_segment_deletes() -> None:
    files = fragments(14) + [data(f"u{i}", 40) for i in range(2)] + [data("seg", 120), data("seg2", 120)]
    deletes = [pos("p1", 2, ref="seg"), pos("p2", 3, ref="seg")]
    p = _plan(files, deletes)
    assert p.kind == "minor"
    rewrite = [f.path.rsplit("/", 1)[1] for t in p.tasks for f in t.rewrite_data_files]
    assert sorted(rewrite) == sorted(f"a-0-f{i}" for i in range(14))
    pos_tasks = [t for t in p.tasks if t.rewrite_pos_data_files]
    assert len(pos_tasks) == 1
    assert [f.path for f in pos_tasks[0].rewrite_pos_data_files] == ["s3://b/seg"]
    assert [d.path for d in pos_tasks[0].delete_files] == ["s3://b/p1", "s3://b/p2"]
    assert p.partitions[0]["kind"] == "minor" and p.partitions[0]["tasks"] == 2
    _check_invariants(p, deletes, CFG.max_task_size)


def test_major_adds_undersized_and_duplicate_ratio_segments() -> None:
    files = fragments(3) + [data(f"u{i}", 40) for i in range(4)] + [data("dup", 120), data("ok", 120)]
    deletes = [pos("p1", 2, records=500, ref="dup")]
    p = _plan(files, deletes)
    assert p.kind == "major"
    rewrite = sorted(f.path.rsplit("/", 1)[1] for t in p.tasks for f in t.rewrite_data_files)
    assert "dup" in rewrite and "ok" not in rewrite
    assert {f"u{i}" for i in range(4)} <= set(rewrite)
    _check_invariants(p, deletes, CFG.max_task_size)
    # forcing minor on the same table: only fragments (dup has a single position file: left alone)
    minor = _plan(files, deletes, "minor")
    assert minor.kind == "minor"
    assert sorted(f.path.rsplit("/", 1)[1] for t in minor.tasks for f in t.rewrite_data_files) == [
        "a-0-f0",
        "a-0-f1",
        "a-0-f2",
    ]


def test_full_rewrite_all_files_or_only_what_needs_it() -> None:
    files = [data("u1", 40), data("u2", 40), data("t1", 120), data("t2", 120, seq=1)]
    deletes = [eq("e1", 2)]
    full = CFG.replace(full_trigger_interval_ms=0)
    p = _plan(files, deletes, cfg=full)
    assert p.kind == "full"
    assert sorted(f.path for t in p.tasks for f in t.rewrite_data_files) == sorted(f.path for f in files)
    _check_invariants(p, deletes, full.max_task_size)
    partial = full.replace(full_rewrite_all_files=False)
    p = _plan(
        [data("u1", 40), data("u2", 40), data("t1", 120, seq=5), data("t2", 120)], [eq("e1", 2)], cfg=partial
    )
    assert p.kind == "full"
    # t1 (seq 5) has no delete and is large: kept; t2 has the equality delete
    chosen = sorted(f.path.rsplit("/", 1)[1] for t in p.tasks for f in t.rewrite_data_files)
    assert chosen == ["t2", "u1", "u2"]


def test_no_single_file_noop_tasks() -> None:
    # three 70 MB undersized files with target 128 MB: every bin holds one file -> no task
    files = [data(f"u{i}", 70) for i in range(3)]
    p = _plan(files, [], "major")
    assert p.tasks == [] and p.kind is None
    # with a delete on one of them that task is kept
    p = _plan(files, [pos("p", 2, ref="u1")], "major")
    assert [[f.path for f in t.rewrite_data_files] for t in p.tasks] == [["s3://b/u1"]]


def test_partitions_largest_cost_first_until_cap() -> None:
    files = fragments(20, "a") + fragments(30, "b") + fragments(13, "c")
    p = _plan(files, [])
    assert [x["path"] for x in p.partitions] == ["0=b", "0=a", "0=c"]
    assert [t.partition for t in p.tasks] == [["b"], ["a"], ["c"]]
    capped = _plan(files, [], max_input_bytes=25 * MB)
    assert [x["path"] for x in capped.partitions] == ["0=b"]  # 30 MB crosses the cap: still taken
    capped = _plan(files, [], max_input_bytes=31 * MB)
    assert [x["path"] for x in capped.partitions] == ["0=b", "0=a"]


def test_task_size_bound_and_many_tasks() -> None:
    cfg = CFG.replace(target_size=8 * MB, max_task_size_bytes=8 * MB)  # fragments <= 1 MB
    files = [data(f"f{i}", 0.3 + (i % 7) / 10) for i in range(200)]
    p = _plan(files, [eq("e", 2)], cfg=cfg)
    assert p.kind == "minor"
    assert len(p.tasks) > 10
    _check_invariants(p, [eq("e", 2)], cfg.max_task_size)
    assert all(t.delete_files and t.delete_files[0].path == "s3://b/e" for t in p.tasks)


def test_max_tasks_keeps_the_costliest_tasks_first() -> None:
    """A mapped execute task expands to at most max_map_length tasks: the plan never has more."""
    cfg = CFG.replace(target_size=8 * MB, max_task_size_bytes=8 * MB)
    files = [data(f"f{i}", 0.3 + (i % 7) / 10) for i in range(200)]
    full = _plan(files, [eq("e", 2)], cfg=cfg)
    assert len(full.tasks) > 10
    cut = _plan(files, [eq("e", 2)], cfg=cfg, max_tasks=4)
    assert [t.task_id for t in cut.tasks] == [0, 1, 2, 3]
    assert [{**t.to_dict(), "plan_id": ""} for t in cut.tasks] == [
        {**t.to_dict(), "plan_id": ""} for t in full.tasks[:4]
    ]
    _check_invariants(cut, [eq("e", 2)], cfg.max_task_size)
    many = fragments(20, "a") + fragments(30, "b") + fragments(13, "c")
    assert [x["path"] for x in _plan(many, [], max_tasks=1).partitions] == ["0=b"]
    with pytest.raises(ValueError, match="max_tasks must be > 0"):
        _plan(files, [], cfg=cfg, max_tasks=0)


def test_max_file_count_bounds_the_process_costliest_partitions_first() -> None:
    """self-optimizing.max-file-count: the input files of one process; what is left waits."""
    files = fragments(20, "a") + fragments(30, "b") + fragments(13, "c")
    full = _plan(files, [])
    assert sum(len(t.rewrite_data_files) for t in full.tasks) == 63
    capped = _plan(files, [], cfg=CFG.replace(max_file_count=45))
    counts = [
        len(t.rewrite_data_files) + len(t.rewrite_pos_data_files) + len(t.delete_files) for t in capped.tasks
    ]
    assert sum(counts) <= 45
    assert [x["path"] for x in capped.partitions] == ["0=b"]  # the costliest partition first; a: 30+20 > 45
    # a single task over the cap still goes (or it would never run)
    tiny = _plan(files, [], cfg=CFG.replace(max_file_count=1))
    assert len(tiny.tasks) == 1 and tiny.partitions[0]["path"] == "0=b"
    assert OptimizingConfig.from_properties({"self-optimizing.max-file-count": "7"}).max_file_count == 7


def test_plan_json_round_trip_and_small() -> None:
    files = [*fragments(14), data("seg", 120)]
    deletes = [pos("p1", 2, ref="seg"), pos("p2", 3, ref="seg"), eq("e1", 4)]
    p = _plan(files, deletes)
    text = p.to_json()
    again = OptimizingPlan.from_json(text)
    assert again == p
    assert again.tasks[0].rewrite_data_files[0] == p.tasks[0].rewrite_data_files[0]
    assert json.loads(text)["properties"]["self-optimizing.target-size"] == str(CFG.target_size)
    assert len(text) < 20_000
    assert isinstance(RewriteTask.from_dict(json.loads(json.dumps(p.tasks[0].to_dict()))), RewriteTask)


def test_disabled_and_forced() -> None:
    disabled = CFG.replace(enabled=False)
    assert _plan(fragments(20), [], cfg=disabled).tasks == []
    forced = _plan(fragments(20), [], "minor", cfg=disabled)
    assert forced.kind == "minor" and forced.tasks
    assert forced.partitions[0]["reasons"]
    with pytest.raises(ValueError, match="kind"):
        _plan(fragments(2), [], "mega")
    with pytest.raises(ValueError, match="max_input_bytes"):
        plan_evaluation(classify([], [], CFG), max_input_bytes=0)


def test_evaluate_and_plan_100k_files_fast() -> None:
    files = [data(f"d{i}", 0.5 + (i % 40), seq=i % 300 + 1, part=f"p{i % 100}") for i in range(100_000)]
    deletes = [eq(f"e{i}", i % 300 + 2, part=f"p{i % 100}") for i in range(2_000)]
    start = time.process_time()  # CPU seconds, not disturbed by other load
    # no self-optimizing.max-file-count cap here: the whole table is planned
    ev = classify(files, deletes, CFG.replace(max_file_count=1_000_000), now_ms=NOW, last_minor_ms=NOW)
    p = plan_evaluation(ev)
    elapsed = time.process_time() - start
    assert p.kind is not None and p.tasks
    assert sum(len(t.rewrite_data_files) + len(t.rewrite_pos_data_files) for t in p.tasks) > 10_000
    assert elapsed < 8, elapsed


# ----------------------------------------------------------------------------- real tables


def test_real_empty_table(catalog: Any) -> None:
    table = make_table(catalog)
    p = plan(table, now=NOW)
    assert (p.kind, p.tasks, p.base_snapshot_id, p.base_sequence_number) == (None, [], None, None)
    assert plan(table, "full", now=NOW).tasks == []


def test_real_minor_plan_on_small_appends(catalog: Any) -> None:
    table = make_table(catalog, spec="identity", properties=SMALL)
    append_many(table, 13, cats=("a", "b", "c"))
    p = plan(table, now=NOW, last_minor_ms=NOW)
    snap = table.current_snapshot()
    assert p.kind == "minor"
    assert (p.base_snapshot_id, p.base_sequence_number) == (snap.snapshot_id, snap.sequence_number)
    assert p.table == "db.t"
    assert p.created_at_ms == NOW
    assert len(p.tasks) == 3
    assert sorted(t.partition_path for t in p.tasks) == ["cat=a", "cat=b", "cat=c"]
    live = {f.path for f in live_files(table).data_files}
    assert {f.path for t in p.tasks for f in t.rewrite_data_files} == live
    _check_invariants(p, [], 64000)
    assert OptimizingPlan.from_json(p.to_json()) == p


def test_real_cap_and_old_snapshot(sqlite_catalog: Any) -> None:
    table = make_table(sqlite_catalog, spec="identity", properties=SMALL)
    append_many(table, 12, cats=("a",))
    first = table.current_snapshot()
    append_many(table, 13, cats=("b",))
    p = plan(table, now=NOW, last_minor_ms=NOW, max_input_bytes=1)
    assert [t.partition_path for t in p.tasks] == ["cat=b"]  # b has more fragments: higher cost
    old = plan(table, now=NOW, last_minor_ms=NOW, snapshot_id=first.snapshot_id)
    assert old.base_snapshot_id == first.snapshot_id
    assert [t.partition_path for t in old.tasks] == ["cat=a"]


def test_real_evolved_spec_and_v1(catalog: Any) -> None:
    table = make_table(catalog, spec="unpartitioned", properties=SMALL, format_version=1)
    append_many(table, 3)
    with table.update_spec() as update:
        update.add_field("cat", IdentityTransform(), "cat")
    append_many(table, 3, cats=("a",))
    p = plan(table, "minor", now=NOW)
    assert sorted((t.spec_id, t.partition_path) for t in p.tasks) == [(0, ""), (1, "cat=a")]
    assert p.base_sequence_number == 0
    _check_invariants(p, [], 64000)


def test_real_deletes_attached_to_tasks(catalog: Any) -> None:
    table = make_table(catalog, spec="identity", properties=SMALL)
    table.append(rows(0, 10_000))  # target-size segment
    append_many(table, 4, n=5)
    files = live_files(table)
    seg = max(files.data_files, key=lambda f: f.size_bytes)
    small = min(files.data_files, key=lambda f: f.size_bytes)
    table = add_position_deletes(table, {seg.path: [0], small.path: [1]})
    table = add_position_deletes(table, {seg.path: [5]})
    table = upsert_with_equality_deletes(table, rows(3, 1), ["id"])
    after = live_files(table)
    p = plan(table, "minor", now=NOW)
    assert p.kind == "minor"
    _check_invariants(p, after.delete_files, 64000)
    pos_task = next(t for t in p.tasks if t.rewrite_pos_data_files)
    assert [f.path for f in pos_task.rewrite_pos_data_files] == [seg.path]
    assert {d.content for d in pos_task.delete_files} == {"position_deletes", "equality_deletes"}
    rewrite_task = next(t for t in p.tasks if t.rewrite_data_files)
    assert seg.path not in {f.path for f in rewrite_task.rewrite_data_files}
    assert any(d.content == "equality_deletes" for d in rewrite_task.delete_files)


def test_real_plans_execute_and_commit_without_losing_rows(catalog: Any) -> None:
    """Plans made here run through execute + commit; every row survives, and the table gets healthier."""
    from airflow_provider_amoro.optimizing.commit import commit
    from airflow_provider_amoro.optimizing.evaluate import evaluate
    from airflow_provider_amoro.optimizing.execute import execute
    from airflow_provider_amoro.testing.reader import content_hash, read_table

    table = make_table(catalog, spec="identity", properties=SMALL)
    table.append(rows(100_000, 10_000))  # a target-size segment
    append_many(table, 12, n=20, cats=("a", "b"))
    seg = max(live_files(table).data_files, key=lambda f: f.size_bytes)
    table = add_position_deletes(table, {seg.path: [0, 1]})
    table = add_position_deletes(table, {seg.path: [2]})
    table = upsert_with_equality_deletes(table, rows(5, 2, cats=("a", "b")), ["id"])
    before = read_table(table)
    health_before = evaluate(table, now=NOW, last_minor_ms=NOW).health_score

    for kind in ("minor", "full"):
        p = plan(table, kind, now=NOW)
        assert p.tasks, kind
        p = OptimizingPlan.from_json(p.to_json())  # as it travels through XCom
        results = [execute(table, t) for t in p.tasks]
        commit(table, p, results)
        table = catalog.load_table("db.t")
        after = read_table(table)
        assert after.num_rows == before.num_rows
        assert content_hash(after) == content_hash(before)

    ev = evaluate(table, now=NOW, last_minor_ms=NOW)
    assert ev.health_score > health_before
    assert ev.kind is None, ev.reasons
    assert (ev.data_files, ev.delete_files) == (2, 0)  # one file per partition, deletes applied


@st.composite
def _tables(draw: Any) -> tuple[list[FileRef], list[FileRef], OptimizingConfig]:
    n = draw(st.integers(1, 60))
    files = [
        data(
            f"d{i}",
            draw(st.floats(0.01, 3.0)),
            seq=draw(st.integers(1, 6)),
            part=draw(st.sampled_from(["a", "b", None])),
            spec=draw(st.integers(0, 1)),
            records=draw(st.integers(1, 100)),
        )
        for i in range(n)
    ]
    deletes: list[FileRef] = []
    for i in range(draw(st.integers(0, 12))):
        target = draw(st.sampled_from(files))
        seq = draw(st.integers(1, 7))
        if draw(st.booleans()):
            ref = target.path.rsplit("/", 1)[1] if draw(st.booleans()) else None
            d = pos(f"p{i}", seq, part=target.partition[0] if target.partition else None, ref=ref)
            deletes.append(replace(d, spec_id=target.spec_id, record_count=draw(st.integers(1, 30))))
        else:
            d = eq(f"e{i}", seq, part=target.partition[0] if target.partition else None)
            deletes.append(replace(d, spec_id=target.spec_id))
    cfg = OptimizingConfig(
        target_size=2 * MB,
        max_task_size_bytes=draw(st.sampled_from([2 * MB, 3 * MB, 5 * MB])),
        minor_trigger_file_count=draw(st.integers(1, 5)),
        full_trigger_interval_ms=draw(st.sampled_from([-1, 0])),
        full_rewrite_all_files=draw(st.booleans()),
    )
    return files, deletes, cfg


@settings(max_examples=100, deadline=None)
@given(_tables(), st.sampled_from([None, "minor", "major", "full"]))
def test_plan_invariants_hold_for_any_table(table: Any, kind: Any) -> None:
    files, deletes, cfg = table
    p = _plan(files, deletes, kind, cfg=cfg)
    _check_invariants(p, deletes, cfg.max_task_size)
    assert (p.kind is None) == (not p.tasks)
    assert OptimizingPlan.from_json(p.to_json()) == p
    live = {f.path for f in files}
    assert {f.path for t in p.tasks for f in [*t.rewrite_data_files, *t.rewrite_pos_data_files]} <= live


def test_real_full_sorts_a_lone_unsorted_file_once(sqlite_catalog: Any) -> None:
    from airflow_provider_amoro.optimizing.commit import commit
    from airflow_provider_amoro.optimizing.evaluate import evaluate
    from airflow_provider_amoro.optimizing.execute import execute
    from airflow_provider_amoro.testing.reader import content_hash, read_table

    table = make_table(sqlite_catalog, properties=SMALL)
    table.append(rows(0, 10_000))  # one target-size file, nothing to fix
    assert plan(table, "full", now=NOW).tasks == []  # no sort order: nothing to do
    with table.transaction() as tx, tx.update_sort_order() as update:
        update.desc("id", IdentityTransform())
    table = sqlite_catalog.load_table("db.t")
    assert not table.sort_order().is_unsorted
    full_cfg = {"self-optimizing.full.trigger.interval": "86400000"}
    assert evaluate(table, now=NOW, last_full_ms=NOW - 86_400_001).kind is None  # interval off
    with table.transaction() as tx:
        tx.set_properties(full_cfg)
    table = sqlite_catalog.load_table("db.t")
    assert evaluate(table, now=NOW, last_minor_ms=NOW, last_full_ms=NOW - 86_400_001).kind == "full"
    p = plan(table, now=NOW, last_minor_ms=NOW, last_full_ms=NOW - 86_400_001)
    assert [len(t.rewrite_data_files) for t in p.tasks] == [1]  # the lone file gets sorted
    before = read_table(table)
    commit(table, p, [execute(table, t) for t in p.tasks])
    table = sqlite_catalog.load_table("db.t")
    assert content_hash(read_table(table)) == content_hash(before)
    (f,) = live_files(table).data_files
    assert f.sort_order_id == table.sort_order().order_id
    assert plan(table, "full", now=NOW).tasks == []  # sorted now: nothing left
    assert evaluate(table, now=NOW, last_minor_ms=NOW, last_full_ms=NOW - 86_400_001).kind is None


def test_full_on_many_large_files_is_fast() -> None:
    """100,000 target-size files: every bin holds one file; planning stays linear."""
    cfg = CFG.replace(full_trigger_interval_ms=0)
    files = [data(f"t{i}", 100 + i % 20, part=f"p{i % 10}") for i in range(100_000)]
    start = time.process_time()  # CPU seconds, not disturbed by other load
    p = _plan(files, [], "full", cfg=cfg)
    elapsed = time.process_time() - start
    assert p.tasks == [] and p.kind is None  # nothing to fix in any single file
    assert elapsed < 8, elapsed
