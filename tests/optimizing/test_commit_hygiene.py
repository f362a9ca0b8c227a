"""Commit details: DELETED-only manifests are dropped; old-sequence concurrent equality deletes refused."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from builders import ID_V_SCHEMA, id_v_rows, new_table
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table
from pyiceberg.typedef import Record

from airflow_provider_amoro.optimizing.commit import CommitValidationError, commit, replace_files
from airflow_provider_amoro.optimizing.delete_files import write_equality_delete_file
from airflow_provider_amoro.testing.reader import canonical_rows, read_table

from .commit_support import exists, hand_plan, hand_rewrite, live


def _table(catalog: Catalog, batches: int = 6) -> Any:
    table = new_table(catalog, "db.t", ID_V_SCHEMA)
    for b in range(batches):
        table.append(id_v_rows(range(b * 10, (b + 1) * 10)))
    return catalog.load_table("db.t")


def _deleted_only(table: Table) -> list[str]:
    """Manifests of the head snapshot without a live entry that an earlier snapshot wrote."""
    table.refresh()
    head = table.current_snapshot()
    return [
        m.manifest_path
        for m in head.manifests(table.io)
        if m.added_snapshot_id != head.snapshot_id
        and not m.fetch_manifest_entry(table.io, discard_deleted=True)
    ]


def test_deleted_only_manifests_are_not_carried_forward(catalog: Catalog) -> None:
    table = _table(catalog)
    expected = canonical_rows(read_table(table))
    originals = live(table)
    for round_ in range(3):  # three partial optimizings, two of the appended files each
        files = originals[2 * round_ : 2 * round_ + 2]
        plan = hand_plan(table, [{"rewrite_data_files": files}])
        commit(table, plan, [hand_rewrite(table, plan.tasks[0])])
        assert _deleted_only(table) == []
    head = table.current_snapshot()
    manifests = head.manifests(table.io)
    # every manifest carries live files, except the one holding this commit's DELETED entries
    empty = [m for m in manifests if not (m.added_files_count or m.existing_files_count)]
    assert len(empty) == 1 and empty[0].added_snapshot_id == head.snapshot_id
    assert canonical_rows(read_table(table)) == expected


def test_concurrent_equality_delete_with_an_old_sequence_number_is_refused(catalog: Catalog) -> None:
    """Its rows would come back: the outputs carry the base sequence number, above the delete's."""
    table = _table(catalog)
    plan = hand_plan(table, [{"rewrite_data_files": live(table)}])
    result = hand_rewrite(table, plan.tasks[0])
    # Another writer commits an equality delete (ids 5 and 55) with data sequence number 3: it
    # applies to the files appended first and second only.
    eq = write_equality_delete_file(
        table, pa.table({"id": pa.array([5, 55], pa.int64())}), [1], spec_id=0, partition=Record()
    )
    replace_files(catalog.load_table("db.t"), add_deletes=[eq], sequence_number=3, summary={})
    table.refresh()
    expected = canonical_rows(read_table(table))
    assert 5 not in {r[0] for r in expected} and 55 in {r[0] for r in expected}

    with pytest.raises(CommitValidationError, match="would not apply to the rewritten rows"):
        commit(table, plan, [result])

    assert canonical_rows(read_table(table)) == expected
    assert not any(exists(table, o["file_path"]) for o in result.outputs)


def test_concurrent_equality_delete_with_a_new_sequence_number_is_fine(catalog: Catalog) -> None:
    table = _table(catalog)
    plan = hand_plan(table, [{"rewrite_data_files": live(table)}])
    result = hand_rewrite(table, plan.tasks[0])
    eq = write_equality_delete_file(
        table, pa.table({"id": pa.array([5, 55], pa.int64())}), [1], spec_id=0, partition=Record()
    )
    replace_files(catalog.load_table("db.t"), add_deletes=[eq], summary={})  # its own, newer number
    table.refresh()
    expected = canonical_rows(read_table(table))
    commit(table, plan, [result])
    assert canonical_rows(read_table(table)) == expected
