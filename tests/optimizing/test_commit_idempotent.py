"""Commit idempotency and reference-checked cleanup: a repeated commit never destroys the table.

Each test ends with the same two checks: the table reads row-identical with the independent reader,
and every file a retained snapshot references exists.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from builders import ID_V_SCHEMA, id_v_rows
from file_checks import missing_referenced_files
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitStateUnknownException
from pyiceberg.table import Table

from airflow_provider_amoro.maintenance.expire import expire_snapshots
from airflow_provider_amoro.optimizing.cleanup import PROCESS_ID_KEY, snapshot_of_process
from airflow_provider_amoro.optimizing.commit import CommitValidationError, commit, delete_task_outputs
from airflow_provider_amoro.optimizing.model import OptimizingPlan, TaskResult
from airflow_provider_amoro.testing.reader import canonical_rows, read_table

from .commit_support import exists, hand_plan, hand_rewrite, live


def _table(catalog: Catalog, name: str = "db.t", batches: int = 6) -> Any:
    catalog.create_namespace_if_not_exists("db")
    table = catalog.create_table(name, schema=ID_V_SCHEMA)
    for b in range(batches):
        table.append(id_v_rows(range(b * 10, (b + 1) * 10)))
    return catalog.load_table(name)


def _planned(table: Table) -> tuple[OptimizingPlan, list[TaskResult]]:
    plan = hand_plan(table, [{"rewrite_data_files": live(table)}])
    return plan, [hand_rewrite(table, plan.tasks[0])]


def _outputs(results: list[TaskResult]) -> list[str]:
    return [o["file_path"] for r in results for o in r.outputs]


def _safe(table: Table, expected: list[Any]) -> None:
    table.refresh()
    assert canonical_rows(read_table(table)) == expected
    assert missing_referenced_files(table) == []


def test_the_snapshot_summary_names_the_process(catalog: Catalog) -> None:
    table = _table(catalog)
    plan, results = _planned(table)
    res = commit(table, plan, results)
    assert table.current_snapshot().summary[PROCESS_ID_KEY] == plan.plan_id
    assert snapshot_of_process(table.metadata, plan.plan_id) == res.snapshot_id
    assert snapshot_of_process(table.metadata, "another") is None
    # The id travels with the plan (XCom round trip) and with each task.
    again = OptimizingPlan.from_dict(plan.to_dict())
    assert again.plan_id == plan.plan_id and {t.plan_id for t in again.tasks} == {plan.plan_id}


def test_committing_twice_returns_the_landed_commit(catalog: Catalog) -> None:
    table = _table(catalog)
    expected = canonical_rows(read_table(table))
    plan, results = _planned(table)
    first = commit(table, plan, results)
    snapshots = len(table.metadata.snapshots)

    second = commit(table, plan, results)  # a retried or cleared commit task

    assert second.already_committed and not first.already_committed
    assert second.snapshot_id == first.snapshot_id
    assert (second.removed_data_files, second.added_data_files) == (6, 1)
    assert len(table.metadata.snapshots) == snapshots
    assert all(exists(table, p) for p in _outputs(results))
    _safe(table, expected)
    # A copy of the plan from XCom behaves the same.
    third = commit(catalog.load_table("db.t"), OptimizingPlan.from_dict(plan.to_dict()), results)
    assert third.already_committed and third.snapshot_id == first.snapshot_id
    _safe(table, expected)


def test_commit_again_after_the_landed_snapshot_expired(catalog: Catalog) -> None:
    table = _table(catalog)
    plan, results = _planned(table)
    landed = commit(table, plan, results).snapshot_id
    table.append(id_v_rows(range(100, 105), "later"))
    table.refresh()
    expired = expire_snapshots(table, keep_min_count=1, keep_duration_ms=0)
    assert landed in expired.expired_snapshot_ids
    table.refresh()
    assert snapshot_of_process(table.metadata, plan.plan_id) is None
    expected = canonical_rows(read_table(table))

    again = commit(table, plan, results)

    assert again.already_committed and again.snapshot_id == landed  # found by its live outputs
    assert all(exists(table, p) for p in _outputs(results))
    _safe(table, expected)


def test_a_repeated_commit_with_other_outputs_deletes_only_those(catalog: Catalog) -> None:
    """The execute task ran again after the commit landed: its new files are garbage, the old ones live."""
    table = _table(catalog)
    expected = canonical_rows(read_table(table))
    plan, results = _planned(table)
    commit(table, plan, results)
    rerun = [hand_rewrite(table, plan.tasks[0])]
    assert set(_outputs(rerun)).isdisjoint(_outputs(results))

    again = commit(table, plan, rerun)

    assert again.already_committed
    assert not any(exists(table, p) for p in _outputs(rerun))
    assert all(exists(table, p) for p in _outputs(results))
    _safe(table, expected)


def test_failed_commit_never_deletes_files_a_retained_snapshot_references(catalog: Catalog) -> None:
    """Whatever the exception, cleanup checks references first (outputs only an older snapshot names)."""
    table = _table(catalog)
    plan, results = _planned(table)
    landed = commit(table, plan, results).snapshot_id
    # A later full rewrite replaces the outputs at the head; the landed snapshot still names them.
    plan2, results2 = _planned(table)
    commit(table, plan2, results2)
    expected = canonical_rows(read_table(table))
    stranger = dataclasses.replace(plan, plan_id="lost-id")  # no summary or head entry identifies it
    with pytest.raises(CommitValidationError):
        commit(table, stranger, results)
    assert all(exists(table, p) for p in _outputs(results))
    assert canonical_rows(read_table(table, snapshot_id=landed)) == expected
    _safe(table, expected)
    # The public helper keeps them too, and deletes what nothing references.
    garbage = [hand_rewrite(table, plan.tasks[0])]
    cleaned = delete_task_outputs(table, [*results, *results2, *garbage])
    assert (cleaned.kept_referenced, cleaned.deleted) == (2, 1)
    assert not any(exists(table, p) for p in _outputs(garbage))
    _safe(table, expected)


def test_commit_state_unknown_keeps_outputs_and_a_retry_finds_the_landed_commit(
    sqlite_catalog: Catalog,
) -> None:
    from pyiceberg.catalog.sql import SqlCatalog

    class AppliesThenRaises(SqlCatalog):
        armed = False

        def commit_table(self, table: Table, requirements: Any, updates: Any) -> Any:
            response = super().commit_table(table, requirements, updates)
            if self.armed:
                self.armed = False
                raise CommitStateUnknownException("injected after the commit was applied")
            return response

    _table(sqlite_catalog)
    faulty = AppliesThenRaises(sqlite_catalog.name, **sqlite_catalog.properties)
    table = faulty.load_table("db.t")
    expected = canonical_rows(read_table(table))
    plan, results = _planned(table)
    faulty.armed = True
    with pytest.raises(CommitStateUnknownException):
        commit(table, plan, results)
    assert all(exists(table, p) for p in _outputs(results))
    again = commit(faulty.load_table("db.t"), plan, results)
    assert again.already_committed
    assert again.snapshot_id == snapshot_of_process(sqlite_catalog.load_table("db.t").metadata, plan.plan_id)
    _safe(sqlite_catalog.load_table("db.t"), expected)


def test_an_interrupted_commit_keeps_outputs(sqlite_catalog: Catalog) -> None:
    """A BaseException (task timeout, stop) before the catalog call: the outcome is left to the caller."""
    table = _table(sqlite_catalog)
    plan, results = _planned(table)

    class Timeout(BaseException):
        pass

    real_refresh = table.refresh
    calls = [0]

    def refresh() -> Any:
        calls[0] += 1
        if calls[0] == 2:  # inside the commit loop, before anything is committed
            raise Timeout
        return real_refresh()

    table.refresh = refresh
    with pytest.raises(Timeout):
        commit(table, plan, results)
    assert all(exists(table, p) for p in _outputs(results))


def test_planned_outputs_carry_the_process_prefix_and_are_found_by_it(sqlite_catalog: Catalog) -> None:
    """Files a worker wrote but never reported are found by name in the folders recorded at planning."""
    import posixpath

    from airflow_provider_amoro.optimizing import plan as make_plan
    from airflow_provider_amoro.optimizing.cleanup import (
        list_process_outputs,
        output_folders,
        resolve_process,
    )
    from airflow_provider_amoro.optimizing.execute import execute
    from airflow_provider_amoro.optimizing.model import output_prefix

    table = _table(sqlite_catalog)
    expected = canonical_rows(read_table(table))
    planned = make_plan(table, "minor")
    assert planned.tasks and {t.plan_id for t in planned.tasks} == {planned.plan_id}
    folders = output_folders(table, planned)
    result = execute(table, planned.tasks[0])
    names = [posixpath.basename(p) for p in _outputs([result])]
    assert all(n.startswith(output_prefix(planned.plan_id, 0)) for n in names)
    found = list_process_outputs(table.io, planned.plan_id, folders)
    assert sorted(posixpath.basename(p) for p in found) == sorted(names)
    # Never committed (the worker died): the next run's teardown deletes them.
    outcome = resolve_process(
        table, planned.plan_id, folders, min_sequence_number=planned.base_sequence_number
    )
    assert (outcome.landed, outcome.listed, outcome.cleanup.deleted) == (False, len(names), len(names))
    assert list_process_outputs(table.io, planned.plan_id, folders) == []
    _safe(table, expected)
