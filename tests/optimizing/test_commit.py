"""The REPLACE commit: one snapshot, explicit data sequence numbers, validation, retries, cleanup.

Plans and task outputs here are hand-built (see ``commit_support``), so every test isolates the
commit. Each rewrite is compared row for row with the table before it by the independent reader.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from builders import ID_V_SCHEMA, PARTITION_FIELDS, WIDE_SCHEMA, id_v_rows, new_table
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import LongType, NestedField, StringType

from airflow_provider_amoro.optimizing.commit import (
    CommitResult,
    CommitValidationError,
    commit,
    replace_files,
)
from airflow_provider_amoro.optimizing.delete_files import write_position_delete_file
from airflow_provider_amoro.optimizing.model import TaskResult, datafile_to_dict
from airflow_provider_amoro.properties import PRODUCER_OPTIMIZE, SNAPSHOT_PRODUCER
from airflow_provider_amoro.testing.deletes import add_equality_deletes, add_position_deletes
from airflow_provider_amoro.testing.reader import canonical_rows, content_hash, read_table

from .commit_support import (
    exists,
    hand_plan,
    hand_rewrite,
    live,
    read_inputs,
    ref_of_path,
    snapshot_of,
    write_outputs,
)


def _table(catalog: Catalog, name: str = "db.t", *, batches: int = 6, per: int = 10, **kw: Any) -> Any:
    catalog.create_namespace_if_not_exists("db")
    table = catalog.create_table(name, schema=ID_V_SCHEMA, **kw)
    for b in range(batches):
        table.append(id_v_rows(range(b * per, (b + 1) * per)))
    return catalog.load_table(name)


def _ids(table: Table) -> list[int]:
    return sorted(read_table(table).column("id").to_pylist())


def _raw_entries(table: Table, manifest_path: str) -> list[Any]:
    from pyiceberg.avro.file import AvroFile
    from pyiceberg.manifest import (
        MANIFEST_ENTRY_SCHEMAS,
        DataFile,
        DataFileContent,
        FileFormat,
        ManifestEntry,
        ManifestEntryStatus,
    )

    with AvroFile[ManifestEntry](
        table.io.new_input(manifest_path),
        MANIFEST_ENTRY_SCHEMAS[2],
        read_types={-1: ManifestEntry, 2: DataFile},
        read_enums={0: ManifestEntryStatus, 101: FileFormat, 134: DataFileContent},
    ) as reader:
        return list(reader)


def _entries(table: Table) -> dict[str, Any]:
    snap = table.current_snapshot()
    out = {}
    for m in snap.manifests(table.io):
        for e in m.fetch_manifest_entry(table.io, discard_deleted=True):
            out[e.data_file.file_path] = (e, m)
    return out


def test_compaction_is_one_replace_snapshot_with_base_sequence_number(catalog: Catalog) -> None:
    table = _table(catalog, batches=8)
    before = read_table(table)
    data = live(table)
    plan = hand_plan(table, [{"rewrite_data_files": data}])
    result = hand_rewrite(table, plan.tasks[0])
    snapshots_before = len(table.metadata.snapshots)

    res = commit(table, plan, [result])

    assert isinstance(res, CommitResult)
    assert len(table.metadata.snapshots) == snapshots_before + 1
    snap = table.current_snapshot()
    assert snap.snapshot_id == res.snapshot_id
    assert snap.parent_snapshot_id == plan.base_snapshot_id
    assert snap.summary.operation.value == "replace"
    assert snap.summary[SNAPSHOT_PRODUCER] == PRODUCER_OPTIMIZE
    assert snap.summary["optimizing.kind"] == "minor"
    assert snap.summary["optimizing.input-files"] == "8"
    assert snap.summary["optimizing.output-files"] == "1"
    assert snap.summary["total-data-files"] == "1"
    assert snap.summary["total-records"] == "80"
    assert snap.summary["deleted-data-files"] == "8"
    assert snap.summary["added-data-files"] == "1"
    assert int(snap.summary["total-files-size"]) == sum(r.size_bytes for r in live(table))
    assert (res.removed_data_files, res.added_data_files, res.removed_records, res.added_records) == (
        8,
        1,
        80,
        80,
    )
    assert res.to_dict()["snapshot_id"] == res.snapshot_id
    # The new entry's data sequence number is the base's; its file sequence number is the new snapshot's.
    (path,) = [r.path for r in live(table)]
    entry, manifest = _entries(table)[path]
    assert entry.sequence_number == plan.base_sequence_number
    assert entry.file_sequence_number == snap.sequence_number > plan.base_sequence_number
    # Written explicitly, not inherited: the manifest's min sequence number comes from the entries.
    assert manifest.min_sequence_number == plan.base_sequence_number < manifest.sequence_number
    # The raw Avro entry (no inheritance applied) holds the data sequence number itself.
    (raw,) = _raw_entries(table, manifest.manifest_path)
    assert raw.sequence_number == plan.base_sequence_number
    assert raw.file_sequence_number is None
    after = read_table(table)
    assert after.num_rows == before.num_rows == 80
    assert content_hash(after) == content_hash(before)
    # pyiceberg reads the same rows too.
    assert content_hash(table.scan().to_arrow()) == content_hash(before)


def test_partial_rewrite_keeps_other_files_and_their_manifest_entries(sqlite_catalog: Catalog) -> None:
    table = _table(sqlite_catalog, batches=5)
    before = read_table(table)
    data = live(table)
    old = _entries(table)
    plan = hand_plan(table, [{"rewrite_data_files": data[:3]}])
    commit(table, plan, [hand_rewrite(table, plan.tasks[0])])
    now = _entries(table)
    for ref in data[3:]:
        e, _ = now[ref.path]
        assert (e.sequence_number, e.snapshot_id) == (
            old[ref.path][0].sequence_number,
            old[ref.path][0].snapshot_id,
        )
    for ref in data[:3]:
        assert ref.path not in now
    assert len(now) == 3
    assert content_hash(read_table(table)) == content_hash(before)


def test_concurrent_append_is_kept(catalog: Catalog) -> None:
    table = _table(catalog)
    plan = hand_plan(table, [{"rewrite_data_files": live(table)}])
    result = hand_rewrite(table, plan.tasks[0])
    other = catalog.load_table("db.t")
    other.append(id_v_rows(range(1000, 1005), "new"))
    res = commit(table, plan, [result])
    assert res.snapshot_id == table.current_snapshot().snapshot_id
    assert table.current_snapshot().parent_snapshot_id == other.current_snapshot().snapshot_id
    assert _ids(table) == [*range(60), *range(1000, 1005)]
    assert table.current_snapshot().summary["total-records"] == "65"


def test_concurrent_overwrite_of_rewritten_file_fails_and_cleans_up(catalog: Catalog) -> None:
    table = _table(catalog)
    plan = hand_plan(table, [{"rewrite_data_files": live(table)}])
    result = hand_rewrite(table, plan.tasks[0])
    outputs = [o["file_path"] for o in result.outputs]
    assert all(exists(table, p) for p in outputs)
    other = catalog.load_table("db.t")
    other.delete("id < 10")  # removes the first appended file: copy-on-write delete
    expected = snapshot_of(other)

    with pytest.raises(CommitValidationError, match="removed by a concurrent commit"):
        commit(table, plan, [result])

    assert snapshot_of(table) == expected
    assert _ids(table) == list(range(10, 60))
    assert not any(exists(table, p) for p in outputs)


def test_concurrent_position_delete_on_rewritten_file_fails(catalog: Catalog) -> None:
    table = _table(catalog)
    data = live(table)
    plan = hand_plan(table, [{"rewrite_data_files": data[:3]}])
    result = hand_rewrite(table, plan.tasks[0])
    outputs = [o["file_path"] for o in result.outputs]
    add_position_deletes(catalog.load_table("db.t"), {data[1].path: [0, 3]})
    expected = snapshot_of(table)

    with pytest.raises(CommitValidationError, match="position deletes"):
        commit(table, plan, [result])

    assert snapshot_of(table) == expected
    assert len(_ids(table)) == 58
    assert not any(exists(table, p) for p in outputs)


def test_concurrent_position_delete_on_a_file_not_rewritten_is_fine(catalog: Catalog) -> None:
    table = _table(catalog)
    data = live(table)
    plan = hand_plan(table, [{"rewrite_data_files": data[:3]}])
    result = hand_rewrite(table, plan.tasks[0])
    add_position_deletes(catalog.load_table("db.t"), {data[4].path: [0]})
    expected = canonical_rows(read_table(catalog.load_table("db.t")))
    commit(table, plan, [result])
    assert canonical_rows(read_table(table)) == expected
    assert len(expected) == 59
    assert len(live(table, "position_deletes")) == 1


def test_concurrent_equality_delete_still_applies_to_rewritten_rows(catalog: Catalog) -> None:
    """The sequence-number rule: rows deleted while the optimizer ran stay deleted."""
    table = _table(catalog)
    plan = hand_plan(table, [{"rewrite_data_files": live(table)}])
    result = hand_rewrite(table, plan.tasks[0])
    add_equality_deletes(catalog.load_table("db.t"), id_v_rows([3, 25, 59]), ["id"])
    expected = canonical_rows(read_table(catalog.load_table("db.t")))
    assert len(expected) == 57

    commit(table, plan, [result])

    assert canonical_rows(read_table(table)) == expected
    # The equality delete stays: it applies to the rewritten rows.
    assert len(live(table, "equality_deletes")) == 1


def test_without_the_sequence_number_rule_rows_are_resurrected(sqlite_catalog: Catalog) -> None:
    """Control for the test above: outputs committed with a NEW sequence number resurrect rows."""
    table = _table(sqlite_catalog)
    plan = hand_plan(table, [{"rewrite_data_files": live(table)}])
    outputs = write_outputs(table, read_inputs(table, live(table)).cast(table.schema().as_arrow()))
    add_equality_deletes(sqlite_catalog.load_table("db.t"), id_v_rows([3, 25, 59]), ["id"])
    replace_files(table, remove_data=plan.tasks[0].rewrite_data_files, add_data=outputs, sequence_number=None)
    assert _ids(table) == list(range(60))  # the deleted rows are back: what commit() prevents


def test_dangling_deletes_are_removed_and_applying_ones_kept(catalog: Catalog) -> None:
    table = _table(catalog, batches=3)  # files with ids 0-9, 10-19, 20-29
    f1, f2, f3 = sorted(live(table), key=lambda r: _first_id(table, r))
    add_position_deletes(table, {f1.path: [0], f3.path: [0]})  # one file naming f1 and f3
    add_equality_deletes(table, id_v_rows([15]), ["id"])
    table.refresh()
    before = canonical_rows(read_table(table))
    assert sorted(r[0] for r in before) == [i for i in range(30) if i not in (0, 15, 20)]
    deletes = live(table, "position_deletes") + live(table, "equality_deletes")
    assert len(deletes) == 2

    plan = hand_plan(table, [{"rewrite_data_files": [f1, f2], "delete_files": deletes}], kind="major")
    res = commit(table, plan, [hand_rewrite(table, plan.tasks[0], drop_ids=[0, 15])])
    assert canonical_rows(read_table(table)) == before
    assert res.removed_delete_files == 0  # both still apply to f3
    assert len(live(table, None)) == 4

    plan = hand_plan(
        table,
        [
            {
                "rewrite_data_files": [ref for ref in live(table) if ref.path == f3.path],
                "delete_files": deletes,
            }
        ],
        kind="major",
    )
    res = commit(table, plan, [hand_rewrite(table, plan.tasks[0], drop_ids=[20])])
    assert canonical_rows(read_table(table)) == before
    assert res.removed_delete_files == 2
    assert live(table, "position_deletes") == [] and live(table, "equality_deletes") == []
    assert table.current_snapshot().summary["total-delete-files"] == "0"
    assert table.current_snapshot().summary["total-position-deletes"] == "0"


def _first_id(table: Table, ref: Any) -> int:
    return int(read_inputs(table, [ref]).column("id")[0].as_py())


def test_delete_missing_from_the_task_fails(sqlite_catalog: Catalog) -> None:
    """Safety net: a delete that applies to a rewritten file but was not read would resurrect rows."""
    table = _table(sqlite_catalog, batches=2)
    add_equality_deletes(table, id_v_rows([1]), ["id"])
    plan = hand_plan(table, [{"rewrite_data_files": live(table)}], kind="major")  # delete not listed
    result = hand_rewrite(table, plan.tasks[0])
    with pytest.raises(CommitValidationError, match="not read"):
        commit(table, plan, [result])
    assert 1 not in _ids(table)
    assert not any(exists(table, o["file_path"]) for o in result.outputs)


def test_rewrite_pos_merges_deletes_into_one_position_delete_file(catalog: Catalog) -> None:
    table = _table(catalog, batches=2)
    f1, f2 = live(table)
    add_position_deletes(table, {f1.path: [1]})
    add_position_deletes(table, {f1.path: [2]})
    add_equality_deletes(table, id_v_rows([_first_id(table, f1) + 5]), ["id"])
    table.refresh()
    before = canonical_rows(read_table(table))
    assert len(before) == 17
    deletes = live(table, "position_deletes") + live(table, "equality_deletes")
    assert len(deletes) == 3
    # Hand-merge: positions of f1 deleted by the three files.
    f1_rows = read_inputs(table, [f1])
    live_ids = {r[0] for r in before}
    positions = [i for i, v in enumerate(f1_rows.column("id").to_pylist()) if v not in live_ids]
    assert len(positions) == 3
    merged = write_position_delete_file(
        table, [(f1.path, p) for p in positions], spec_id=f1.spec_id, partition=_partition(table, f1)
    )
    plan = hand_plan(table, [{"rewrite_pos_data_files": [f1], "delete_files": deletes}], kind="minor")
    result = TaskResult(task_id=0, outputs=[datafile_to_dict(merged)], input_files=4)

    res = commit(table, plan, [result])

    # The two position deletes were merged; the equality delete still applies to f2, so it stays.
    assert (res.removed_delete_files, res.added_delete_files, res.removed_data_files) == (2, 1, 0)
    (pos,) = live(table, "position_deletes")
    assert pos.path == merged.file_path
    assert pos.data_sequence_number == plan.base_sequence_number
    assert len(live(table, "equality_deletes")) == 1
    assert canonical_rows(read_table(table)) == before

    # Rewrite-pos over both files: the equality delete applies to nothing any more and goes too.
    deletes = live(table, "position_deletes") + live(table, "equality_deletes")
    merged2 = write_position_delete_file(
        table, [(f1.path, p) for p in positions], spec_id=f1.spec_id, partition=_partition(table, f1)
    )
    plan = hand_plan(table, [{"rewrite_pos_data_files": [f1, f2], "delete_files": deletes}], kind="minor")
    res = commit(table, plan, [TaskResult(task_id=0, outputs=[datafile_to_dict(merged2)])])
    assert (res.removed_delete_files, res.added_delete_files) == (2, 1)
    assert [r.path for r in live(table, "position_deletes")] == [merged2.file_path]
    assert live(table, "equality_deletes") == []
    assert canonical_rows(read_table(table)) == before
    assert {r.path for r in live(table)} == {f1.path, f2.path}
    assert table.current_snapshot().summary["total-delete-files"] == "1"


def _partition(table: Table, ref: Any) -> Any:
    from airflow_provider_amoro.optimizing.model import decode_partition

    return decode_partition(ref.partition)


def test_v1_table_replace(catalog: Catalog) -> None:
    table = _table(catalog, properties={"format-version": "1"})
    assert table.metadata.format_version == 1
    before = read_table(table)
    plan = hand_plan(table, [{"rewrite_data_files": live(table)}])
    res = commit(table, plan, [hand_rewrite(table, plan.tasks[0])])
    assert res.sequence_number is None
    assert table.current_snapshot().summary.operation.value == "replace"
    assert len(live(table)) == 1
    assert content_hash(read_table(table)) == content_hash(before)
    assert content_hash(table.scan().to_arrow()) == content_hash(before)


@pytest.mark.parametrize("field", list(PARTITION_FIELDS.values()), ids=list(PARTITION_FIELDS))
def test_partitioned_tables(sqlite_catalog: Catalog, field: PartitionField) -> None:
    import datetime as dt

    sqlite_catalog.create_namespace("db")
    table = sqlite_catalog.create_table(
        "db.p",
        schema=WIDE_SCHEMA,
        partition_spec=PartitionSpec(field),
        properties={"write.summary.partition-limit": "10"},
    )
    for b in range(4):
        ids = list(range(b * 20, (b + 1) * 20))
        table.append(
            pa.table(
                {
                    "id": pa.array(ids, pa.int64()),
                    "v": [f"v{i}" for i in ids],
                    "cat": [f"c{i % 3}" for i in ids],
                    "d": [dt.date(2024, 1, 1 + i % 2) for i in ids],
                },
                schema=table.schema().as_arrow(),
            )
        )
    table = sqlite_catalog.load_table("db.p")
    before = read_table(table)
    by_partition: dict[str, list[Any]] = {}
    for ref in live(table):
        by_partition.setdefault(repr(ref.partition), []).append(ref)
    assert len(by_partition) > 1
    plan = hand_plan(table, [{"rewrite_data_files": refs} for refs in by_partition.values()])
    add_equality_deletes(sqlite_catalog.load_table("db.p"), before.slice(0, 3), ["id"])
    expected = canonical_rows(read_table(sqlite_catalog.load_table("db.p")))
    results = [hand_rewrite(table, t) for t in plan.tasks]
    res = commit(table, plan, results)
    assert res.added_data_files == len(by_partition)
    assert len(live(table)) == len(by_partition)
    assert canonical_rows(read_table(table)) == expected
    assert len(expected) == 77
    summary = table.current_snapshot().summary.model_dump()
    assert summary["changed-partition-count"] == str(len(by_partition))
    assert sum(k.startswith("partitions.") for k in summary) == len(by_partition)


def test_missing_result_or_wrong_counts_fail_and_clean_up(sqlite_catalog: Catalog) -> None:
    table = _table(sqlite_catalog)
    data = live(table)
    plan = hand_plan(table, [{"rewrite_data_files": data[:3]}, {"rewrite_data_files": data[3:]}])
    r0 = hand_rewrite(table, plan.tasks[0])
    expected = snapshot_of(table)
    with pytest.raises(CommitValidationError, match="without results"):
        commit(table, plan, [r0])
    assert not exists(table, r0.outputs[0]["file_path"])
    r0, r1 = hand_rewrite(table, plan.tasks[0]), hand_rewrite(table, plan.tasks[1])
    r1.output_records += 1
    with pytest.raises(CommitValidationError, match="records"):
        commit(table, plan, [r0, r1])
    r0, r1 = hand_rewrite(table, plan.tasks[0]), hand_rewrite(table, plan.tasks[1])
    r1.input_records += 1  # the executor read a row it did not write
    with pytest.raises(CommitValidationError, match="keep every row"):
        commit(table, plan, [r0, r1])
    assert not exists(table, r0.outputs[0]["file_path"]) and not exists(table, r1.outputs[0]["file_path"])
    assert snapshot_of(table) == expected
    # allow-partial-commit commits the tasks that have results
    plan.properties["self-optimizing.allow-partial-commit"] = "true"
    r0 = hand_rewrite(table, plan.tasks[0])
    res = commit(table, plan, [r0])
    assert res.removed_data_files == 3
    assert snapshot_of(table)[1] == expected[1]


def test_missing_output_file_fails(sqlite_catalog: Catalog) -> None:
    table = _table(sqlite_catalog)
    plan = hand_plan(table, [{"rewrite_data_files": live(table)}])
    result = hand_rewrite(table, plan.tasks[0])
    table.io.delete(result.outputs[0]["file_path"])
    expected = snapshot_of(table)
    with pytest.raises(CommitValidationError, match="does not exist"):
        commit(table, plan, [result])
    assert snapshot_of(table) == expected


def test_commit_conflict_is_retried_with_fresh_metadata(catalog: Catalog) -> None:
    """A real catalog conflict: another writer commits after our refresh and before our commit."""
    table = _table(catalog)
    data = live(table)
    outputs = write_outputs(table, read_inputs(table, data).cast(table.schema().as_arrow()))
    calls = []

    def interfere(state: Any) -> None:
        calls.append(state.snapshot.snapshot_id)
        if len(calls) == 1:
            catalog.load_table("db.t").append(id_v_rows([500]))

    res = replace_files(
        table,
        remove_data=data,
        add_data=outputs,
        sequence_number=table.current_snapshot().sequence_number,
        base_snapshot_id=table.current_snapshot().snapshot_id,
        validate=interfere,
    )
    assert res.attempts == 2
    assert len(calls) == 2 and calls[0] != calls[1]
    assert _ids(table) == [*range(60), 500]
    assert _unreferenced_metadata_files(table) == set()  # the failed attempt's manifests are gone

    # With no retries left the conflict surfaces and nothing is committed.
    table = _table(catalog, "db.u")
    data = live(table)
    outputs = write_outputs(table, read_inputs(table, data).cast(table.schema().as_arrow()))
    calls.clear()

    def interfere_u(state: Any) -> None:
        calls.append(1)
        catalog.load_table("db.u").append(id_v_rows([501]))

    with pytest.raises(CommitFailedException):
        replace_files(table, remove_data=data, add_data=outputs, validate=interfere_u, max_retries=0)
    table.refresh()
    assert _ids(table) == [*range(60), 501]
    assert _unreferenced_metadata_files(table) == set()


def _unreferenced_metadata_files(table: Table) -> set[str]:
    """Avro files in the table's metadata folder that no snapshot references (leftover manifests)."""
    from pathlib import Path
    from urllib.parse import urlparse

    folder = Path(urlparse(table.location()).path) / "metadata"
    on_disk = {p.as_uri() for p in folder.glob("*.avro")}
    referenced: set[str] = set()
    for snap in table.metadata.snapshots:
        referenced.add(snap.manifest_list)
        referenced.update(m.manifest_path for m in snap.manifests(table.io))
    return {p for p in on_disk if p not in {Path(urlparse(r).path).as_uri() for r in referenced}}


def test_replace_files_refuses_files_that_are_not_live(sqlite_catalog: Catalog) -> None:
    table = _table(sqlite_catalog, batches=2)
    with pytest.raises(CommitValidationError, match="no longer live"):
        replace_files(table, remove_deletes=["file:///nowhere/x.parquet"])
    with pytest.raises(CommitValidationError, match="is a data file"):
        replace_files(table, remove_deletes=[live(table)[0].path])


def test_evolved_spec_rewrite_and_concurrent_equality_delete_in_new_spec(sqlite_catalog: Catalog) -> None:
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "v", StringType()),
        NestedField(3, "cat", StringType()),
    )
    table = new_table(sqlite_catalog, "db.e", schema)

    def batch(ids: list[int]) -> pa.Table:
        return pa.table(
            {"id": pa.array(ids, pa.int64()), "v": [f"v{i}" for i in ids], "cat": [f"c{i % 2}" for i in ids]},
            schema=table.schema().as_arrow(),
        )

    for b in range(3):
        table.append(batch(list(range(b * 10, (b + 1) * 10))))
    with table.update_spec() as update:
        update.add_identity("cat")
    table.append(batch([100, 101]))
    table = sqlite_catalog.load_table("db.e")
    old = [r for r in live(table) if r.spec_id == 0]
    assert len(old) == 3 and table.spec().spec_id == 1

    # Without concurrency: old-spec files are rewritten into the current spec, rows unchanged.
    before = canonical_rows(read_table(table))
    plan = hand_plan(table, [{"rewrite_data_files": old}], kind="full")
    result = hand_rewrite(table, plan.tasks[0])
    assert {o["spec_id"] for o in result.outputs} == {1}
    commit(table, plan, [result])
    assert canonical_rows(read_table(table)) == before
    assert {r.spec_id for r in live(table)} == {1}

    # An old-spec file, then a concurrent equality delete in the new spec: it did not apply to the
    # old-spec row but would apply to the moved row, so the commit must fail.
    with table.update_spec() as update:
        update.remove_field("cat")
    table.append(batch([200, 201]))
    table = sqlite_catalog.load_table("db.e")
    old = [r for r in live(table) if r.spec_id == table.spec().spec_id]
    with table.update_spec() as update:
        update.add_identity("cat")
    table = sqlite_catalog.load_table("db.e")
    plan = hand_plan(table, [{"rewrite_data_files": old}], kind="full")
    result = hand_rewrite(table, plan.tasks[0])
    add_equality_deletes(sqlite_catalog.load_table("db.e"), batch([200]), ["id"])
    expected = snapshot_of(table)
    with pytest.raises(CommitValidationError, match="another partition spec"):
        commit(table, plan, [result])
    assert snapshot_of(table) == expected
    assert not any(exists(table, o["file_path"]) for o in result.outputs)


def test_delete_manifest_losing_one_of_two_files_is_rewritten_with_existing_entries(catalog: Catalog) -> None:
    from airflow_provider_amoro.testing.deletes import commit_row_delta

    table = _table(catalog, batches=2)
    f1, f2 = sorted(live(table), key=lambda r: _first_id(table, r))
    p1 = write_position_delete_file(table, [(f1.path, 0)], spec_id=0, partition=_partition(table, f1))
    p2 = write_position_delete_file(table, [(f2.path, 1)], spec_id=0, partition=_partition(table, f2))
    commit_row_delta(table, delete_files=[p1, p2])  # both in one DELETES manifest
    table.refresh()
    before = canonical_rows(read_table(table))
    assert sorted(r[0] for r in before) == [i for i in range(20) if i not in (0, 11)]
    p2_before = ref_of_path(table, p2.file_path)

    plan = hand_plan(table, [{"rewrite_data_files": [f1], "delete_files": live(table, "position_deletes")}])
    res = commit(table, plan, [hand_rewrite(table, plan.tasks[0], drop_ids=[0])])

    assert (res.removed_delete_files, res.removed_data_files) == (1, 1)
    assert [r.path for r in live(table, "position_deletes")] == [p2.file_path]
    p2_after = ref_of_path(table, p2.file_path)
    assert (p2_after.data_sequence_number, p2_after.file_sequence_number) == (
        p2_before.data_sequence_number,
        p2_before.file_sequence_number,
    )
    _, manifest = _entries(table)[p2.file_path]
    assert manifest.content.value == 1 and manifest.existing_files_count == 1
    assert canonical_rows(read_table(table)) == before


@pytest.mark.parametrize(
    ("when", "error"),
    [("after", KeyboardInterrupt), ("before", KeyboardInterrupt), ("after", OSError), ("before", OSError)],
    ids=["killed-after-apply", "killed-before-apply", "error-after-apply", "error-before-apply"],
)
def test_failure_inside_the_catalog_call(
    sqlite_catalog: Catalog, when: str, error: type[BaseException]
) -> None:
    """Outputs are deleted only when the commit surely did not land (fault injected around a real commit)."""
    from pyiceberg.catalog.sql import SqlCatalog

    class FaultyCatalog(SqlCatalog):
        armed = False

        def commit_table(self, table: Table, requirements: Any, updates: Any) -> Any:
            if not self.armed:
                return super().commit_table(table, requirements, updates)
            self.armed = False
            if when == "after":
                super().commit_table(table, requirements, updates)
            raise error("injected")

    _table(sqlite_catalog)
    faulty = FaultyCatalog(sqlite_catalog.name, **sqlite_catalog.properties)
    table = faulty.load_table("db.t")
    before = canonical_rows(read_table(table))
    base = table.current_snapshot().snapshot_id
    plan = hand_plan(table, [{"rewrite_data_files": live(table)}])
    result = hand_rewrite(table, plan.tasks[0])
    outputs = [o["file_path"] for o in result.outputs]
    faulty.armed = True
    landed = when == "after"
    if error is OSError and landed:
        res = commit(table, plan, [result])  # the committer looks and finds its snapshot
        assert res.snapshot_id == table.current_snapshot().snapshot_id
    else:
        with pytest.raises(error):
            commit(table, plan, [result])
    fresh = sqlite_catalog.load_table("db.t")
    assert (fresh.current_snapshot().snapshot_id != base) is landed
    assert canonical_rows(read_table(fresh)) == before
    # Kept unless the commit surely failed (a kill leaves the outcome unknown: orphan cleaning's job).
    kept = landed or error is KeyboardInterrupt
    assert all(exists(fresh, p) for p in outputs) is kept
    assert any(exists(fresh, p) for p in outputs) is kept


def test_rollback_after_the_plan_refuses_the_commit(sqlite_catalog: Catalog) -> None:
    table = _table(sqlite_catalog, batches=4)
    first = table.metadata.snapshots[0].snapshot_id
    plan = hand_plan(table, [{"rewrite_data_files": live(table)[:1]}])
    result = hand_rewrite(table, plan.tasks[0])
    sqlite_catalog.load_table("db.t").manage_snapshots().rollback_to_snapshot(first).commit()
    expected = snapshot_of(table)
    with pytest.raises(CommitValidationError, match="no longer an ancestor"):
        commit(table, plan, [result])
    assert snapshot_of(table) == expected
    assert not exists(table, result.outputs[0]["file_path"])
