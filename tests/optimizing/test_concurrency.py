"""Concurrent writers between plan/execute and commit, with the real planner and executor.

Every case checks the rows with the independent reader against what the writers did: no row lost,
duplicated or resurrected, whether the optimizer's commit succeeds or is refused.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pyarrow as pa
import pytest
from builders import id_v_rows
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from airflow_provider_amoro.optimizing.commit import CommitValidationError, commit
from airflow_provider_amoro.optimizing.execute import execute
from airflow_provider_amoro.optimizing.model import OptimizingPlan, TaskResult
from airflow_provider_amoro.optimizing.optimize import optimize
from airflow_provider_amoro.optimizing.plan import plan as make_plan
from airflow_provider_amoro.testing.deletes import (
    add_equality_deletes,
    add_position_deletes,
    upsert_with_equality_deletes,
)
from airflow_provider_amoro.testing.reader import read_table

from .commit_support import exists, live

REQUIRED_ID_V_SCHEMA = pa.schema(
    [pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string(), nullable=False)]
)
"""ID_V_SCHEMA with ``v`` required too."""


def _rows(ids: list[int], tag: str = "a") -> pa.Table:
    return id_v_rows(ids, tag, schema=REQUIRED_ID_V_SCHEMA)


def _state(table: Table) -> dict[int, str]:
    table.refresh()
    got = read_table(table)
    pairs = list(zip(got.column("id").to_pylist(), got.column("v").to_pylist(), strict=True))
    state = dict(pairs)
    assert len(state) == len(pairs), "duplicate ids"
    return state


def _setup(catalog: Catalog, files: int = 14, per: int = 10, **props: str) -> tuple[Any, dict[int, str]]:
    catalog.create_namespace_if_not_exists("db")
    table = catalog.create_table(
        "db.t", schema=REQUIRED_ID_V_SCHEMA, properties={"self-optimizing.target-size": "1048576", **props}
    )
    for f in range(files):
        table.append(_rows(list(range(f * per, (f + 1) * per))))
    table = catalog.load_table("db.t")
    return table, _state(table)


def _plan_and_execute(table: Table, kind: str | None = None) -> tuple[OptimizingPlan, list[TaskResult]]:
    plan = make_plan(table, kind)  # type: ignore[arg-type]
    assert plan.tasks, "expected something to optimize"
    return plan, [execute(table, task) for task in plan.tasks]


def _outputs(results: list[TaskResult]) -> list[str]:
    return [o["file_path"] for r in results for o in r.outputs]


def _rewritten(plan: OptimizingPlan) -> list[str]:
    return sorted(f.path for t in plan.tasks for f in t.rewrite_data_files)


def test_concurrent_append_is_kept(catalog: Catalog) -> None:
    table, model = _setup(catalog)
    plan, results = _plan_and_execute(table)
    catalog.load_table("db.t").append(_rows([500, 501], "new"))
    model.update({500: "new500", 501: "new501"})
    res = commit(table, plan, results)
    assert res.snapshot_id == table.current_snapshot().snapshot_id
    assert _state(table) == model
    assert len(live(table)) == 2  # the compacted file and the concurrent append


def test_concurrent_position_delete_on_a_rewritten_file_fails_cleanly(catalog: Catalog) -> None:
    table, model = _setup(catalog)
    plan, results = _plan_and_execute(table)
    other = catalog.load_table("db.t")
    add_position_deletes(other, {_rewritten(plan)[2]: [0, 1]})
    expected = _state(other)
    assert len(expected) == len(model) - 2
    snap = other.current_snapshot().snapshot_id
    with pytest.raises(CommitValidationError, match="position deletes"):
        commit(table, plan, results)
    table.refresh()
    assert table.current_snapshot().snapshot_id == snap
    assert _state(table) == expected
    assert not any(exists(table, p) for p in _outputs(results))
    # Planned again, it goes through.
    optimize(table, "minor")
    assert _state(table) == expected


def test_concurrent_equality_delete_on_rewritten_rows_still_applies(catalog: Catalog) -> None:
    """The sequence-number rule: the delete committed during the optimizing keeps deleting."""
    table, model = _setup(catalog)
    plan, results = _plan_and_execute(table)
    add_equality_deletes(catalog.load_table("db.t"), _rows([3, 77, 139]), ["id"])
    for i in (3, 77, 139):
        del model[i]
    commit(table, plan, results)
    assert table.current_snapshot().summary.operation.value == "replace"
    assert _state(table) == model
    # The compacted file really holds the deleted rows: only the delete hides them.
    (compacted,) = [r for r in live(table) if r.path in _outputs(results)]
    assert compacted.record_count == 140
    assert compacted.data_sequence_number == plan.base_sequence_number


def test_concurrent_upsert_keeps_the_new_versions(sqlite_catalog: Catalog) -> None:
    table, model = _setup(sqlite_catalog)
    plan, results = _plan_and_execute(table)
    upsert_with_equality_deletes(sqlite_catalog.load_table("db.t"), _rows([5, 6, 900], "u"), ["id"])
    model.update({5: "u5", 6: "u6", 900: "u900"})
    commit(table, plan, results)
    assert _state(table) == model


@pytest.mark.parametrize("how", ["delete", "overwrite"])
def test_concurrent_removal_of_a_rewritten_file_fails(sqlite_catalog: Catalog, how: str) -> None:
    table, _ = _setup(sqlite_catalog)
    plan, results = _plan_and_execute(table)
    other = sqlite_catalog.load_table("db.t")
    if how == "delete":
        other.delete("id >= 20 and id < 30")  # exactly one appended file: dropped from metadata
    else:
        other.overwrite(_rows([1000, 1001], "o"), overwrite_filter="id < 15")  # copy-on-write rewrite
    expected = _state(other)
    with pytest.raises(CommitValidationError, match="removed by a concurrent commit"):
        commit(table, plan, results)
    assert _state(table) == expected
    assert not any(exists(table, p) for p in _outputs(results))


def test_two_optimizers_on_one_table_only_one_commits(sqlite_catalog: Catalog) -> None:
    table, model = _setup(sqlite_catalog)
    first = _plan_and_execute(table)
    second = _plan_and_execute(sqlite_catalog.load_table("db.t"))
    commit(table, *first)
    with pytest.raises(CommitValidationError):
        commit(sqlite_catalog.load_table("db.t"), *second)
    assert _state(table) == model
    assert not any(exists(table, p) for p in _outputs(second[1]))
    assert all(exists(table, p) for p in _outputs(first[1]))


def test_rewrite_pos_with_a_concurrent_position_delete_on_the_same_file(sqlite_catalog: Catalog) -> None:
    """Rewrite-pos keeps the data file, so a new position delete for it is no conflict."""
    table, _ = _setup(
        sqlite_catalog,
        files=1,
        per=4000,
        **{"self-optimizing.target-size": "16384", "self-optimizing.min-target-size-ratio": "0.1"},
    )
    (data,) = live(table)
    add_position_deletes(table, {data.path: [1, 2]})
    add_position_deletes(table, {data.path: [3]})
    add_equality_deletes(table, _rows([10]), ["id"])
    plan, results = _plan_and_execute(table, "minor")
    assert [t.rewrite_pos_data_files for t in plan.tasks] == [
        [ref for ref in live(table) if ref.path == data.path]
    ]
    add_position_deletes(sqlite_catalog.load_table("db.t"), {data.path: [100]})
    expected = _state(sqlite_catalog.load_table("db.t"))
    assert len(expected) == 4000 - 5
    res = commit(table, plan, results)
    assert (res.removed_delete_files, res.added_delete_files) == (3, 1)
    assert _state(table) == expected
    assert len(live(table, "position_deletes")) == 2 and live(table, "equality_deletes") == []


def test_writer_threads_racing_the_optimizer(catalog: Catalog) -> None:
    """Appends and equality deletes from another thread while optimize() runs: conflicts retried."""
    table, model = _setup(catalog, files=20, per=5)
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            other = catalog.load_table("db.t")
            rng = random.Random(1)
            n = 10_000
            while not stop.is_set():
                if rng.random() < 0.7:
                    ids = [n, n + 1]
                    n += 2
                    other.append(_rows(ids, "w"))
                    with lock:
                        model.update({i: f"w{i}" for i in ids})
                else:
                    with lock:
                        victim = sorted(model)[rng.randrange(len(model))]
                    add_equality_deletes(other, _rows([victim]), ["id"])
                    with lock:
                        model.pop(victim, None)
                stop.wait(0.05)  # a streaming writer: a commit every ~50-100 ms
        except Exception as exc:  # noqa: BLE001 - any writer failure fails the test below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    outcomes = []
    try:
        for _ in range(4):
            try:
                outcomes.append(optimize(catalog.load_table("db.t"), "minor").snapshot_id)
            except (CommitValidationError, CommitFailedException):
                outcomes.append(None)  # refused: nothing committed, planned again next round
    finally:
        stop.set()
        thread.join(60)
    assert not errors
    assert any(outcomes)
    assert _state(table) == model
