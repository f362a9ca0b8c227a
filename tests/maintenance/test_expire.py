"""Expiry on local and S3 warehouses: exactly the unreachable files go, kept snapshots read the same."""

from __future__ import annotations

import time
from typing import Any

import pytest
from builders import ID_V_SCHEMA, id_v_iceberg_schema, id_v_rows, new_table
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.transforms import IdentityTransform

from airflow_provider_amoro.maintenance import InvalidPropertyError, expire_snapshots
from airflow_provider_amoro.maintenance.expire import plan_expiry
from airflow_provider_amoro.testing.deletes import (
    add_position_deletes,
    live_data_files,
    upsert_with_equality_deletes,
)
from airflow_provider_amoro.testing.reader import content_hash, read_table

from .helpers import norm, reachable, snapshot_hashes, storage_files, while_appending


def _history(lake: Catalog) -> tuple[Any, int]:
    """Appends, a pyiceberg delete, position deletes, an upsert and a tag; returns (table, tagged id)."""
    table = new_table(lake, "ns.orders", ID_V_SCHEMA)
    table.append(id_v_rows(range(0, 10)))
    table.append(id_v_rows(range(10, 20)))
    table.delete("id < 3")
    tagged = table.current_snapshot().snapshot_id
    table.manage_snapshots().create_tag(tagged, "audit").commit()
    table.append(id_v_rows(range(20, 30)))
    target = next(f for f in live_data_files(table) if f.record_count == 10)
    add_position_deletes(table, {target.file_path: [0, 1]})
    upsert_with_equality_deletes(table, id_v_rows([11, 12], tag="u"), ["id"])
    table.append(id_v_rows(range(30, 35)))
    return table, tagged


def test_expire_deletes_exactly_the_unreachable_files(lake: Catalog) -> None:
    table, tagged = _history(lake)
    before_ids = [s.snapshot_id for s in table.snapshots()]
    hashes = snapshot_hashes(table)
    all_reached = reachable(table, before_ids, live_only=False)
    storage_before = storage_files(table)
    assert all_reached <= storage_before

    dry = expire_snapshots(table, keep_min_count=2, keep_duration_ms=0, dry_run=True)
    assert storage_files(table) == storage_before
    assert [s.snapshot_id for s in table.snapshots()] == before_ids

    result = expire_snapshots(table, keep_min_count=2, keep_duration_ms=0)
    kept = [s.snapshot_id for s in table.snapshots()]
    assert set(kept) == {tagged, *before_ids[-2:]}
    assert sorted(result.expired_snapshot_ids) == sorted(set(before_ids) - set(kept))
    assert dry.expired_snapshot_ids == result.expired_snapshot_ids

    kept_live = reachable(table, kept, live_only=True)
    expected = all_reached - kept_live
    removed = storage_before - storage_files(table)
    assert removed == expected
    assert result.deleted_files == dry.deleted_files == len(expected)
    assert result.bytes_freed == dry.bytes_freed > 0
    assert result.failed_deletes == 0
    assert not any(p.endswith(".metadata.json") for p in removed)
    for sid in kept:
        assert content_hash(read_table(table, snapshot_id=sid)) == hashes[sid]
    # idempotent: a second run finds nothing
    again = expire_snapshots(table, keep_min_count=2, keep_duration_ms=0)
    assert again.expired_snapshot_ids == [] and again.deleted_files == 0


def test_expire_respects_protected_snapshot_and_duration(sqlite_catalog: Catalog) -> None:
    table = new_table(sqlite_catalog, "ns.t", ID_V_SCHEMA)
    for i in range(5):
        table.append(id_v_rows([i]))
        time.sleep(0.005)
    ids = [s.snapshot_id for s in table.snapshots()]
    stamps = [s.timestamp_ms for s in table.snapshots()]
    result = expire_snapshots(table, keep_min_count=1, keep_duration_ms=0, protected_snapshot_id=ids[2])
    assert result.expired_snapshot_ids == sorted(ids[:2])
    assert [s.snapshot_id for s in table.snapshots()] == ids[2:]
    # snapshots newer than the keep duration stay
    result = expire_snapshots(
        table, now=stamps[4] + 1, keep_min_count=1, keep_duration_ms=stamps[4] - stamps[3] + 1
    )
    assert [s.snapshot_id for s in table.snapshots()] == ids[3:]
    assert table.scan().to_arrow().num_rows == 5


def test_expire_unknown_protected_snapshot_skips(sqlite_catalog: Catalog) -> None:
    table = new_table(sqlite_catalog, "ns.t", ID_V_SCHEMA)
    table.append(id_v_rows([1]))
    table.append(id_v_rows([2]))
    result = expire_snapshots(table, keep_duration_ms=0, protected_snapshot_id=123)
    assert result.skipped and "123" in (result.skip_reason or "")
    assert len(table.snapshots()) == 2


def test_ref_retention_fields(sqlite_catalog: Catalog) -> None:
    table = new_table(sqlite_catalog, "ns.t", ID_V_SCHEMA)
    for i in range(4):
        table.append(id_v_rows([i]))
    ids = [s.snapshot_id for s in table.snapshots()]
    now = table.snapshots()[-1].timestamp_ms + 10_000
    table.manage_snapshots().create_tag(ids[0], "old", max_ref_age_ms=1000).commit()
    table.manage_snapshots().create_tag(ids[1], "forever").commit()
    table.manage_snapshots().create_branch(ids[2], "b", min_snapshots_to_keep=3).commit()
    plan = plan_expiry(table.metadata, now_ms=now, min_count=1, keep_duration_ms=0)
    assert plan.removed_refs == ["old"]
    # main keeps ids[3]; the tag keeps ids[1]; branch b keeps ids[2], ids[1], ids[0] (min 3)
    assert plan.expire_ids == set()
    table.manage_snapshots().remove_branch("b").commit()
    result = expire_snapshots(table, now=now, keep_min_count=1, keep_duration_ms=0)
    assert result.removed_refs == ["old"]
    assert sorted(result.expired_snapshot_ids) == sorted([ids[0], ids[2]])
    assert set(table.metadata.refs) == {"main", "forever"}
    # a branch's own max-snapshot-age-ms keeps its recent ancestors
    plan = plan_expiry(table.metadata, now_ms=now, min_count=1, keep_duration_ms=0)
    assert plan.expire_ids == set()


def test_gc_and_table_expire_switches(sqlite_catalog: Catalog) -> None:
    table = new_table(sqlite_catalog, "ns.t", ID_V_SCHEMA, properties={"gc.enabled": "false"})
    table.append(id_v_rows([1]))
    table.append(id_v_rows([2]))
    result = expire_snapshots(table, keep_duration_ms=0)
    assert result.skipped and result.skip_reason == "gc.enabled=false"
    assert result.to_dict()["skipped"] is True
    with table.transaction() as tx:
        tx.set_properties({"gc.enabled": "true", "table-expire.enabled": "false"})
    assert expire_snapshots(table, keep_duration_ms=0).skip_reason == "table-expire.enabled=false"
    with table.transaction() as tx:
        tx.set_properties({"table-expire.enabled": "true", "snapshot.keep.duration": "0min"})
    assert len(expire_snapshots(table).expired_snapshot_ids) == 1
    assert len(table.snapshots()) == 1


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("snapshot.keep.duration", "12 parsecs"),
        ("snapshot.keep.duration", "-5min"),
        ("snapshot.keep.min-count", "0"),
        ("snapshot.keep.min-count", "many"),
        ("gc.enabled", "yes"),
    ],
)
def test_bad_properties_raise(sqlite_catalog: Catalog, prop: str, value: str) -> None:
    table = new_table(sqlite_catalog, "ns.t", ID_V_SCHEMA, properties={prop: value})
    table.append(id_v_rows([1]))
    with pytest.raises(InvalidPropertyError) as info:
        expire_snapshots(table)
    assert prop in str(info.value) and value in str(info.value)


def test_partitioned_table_keeps_shared_files(sqlite_catalog: Catalog) -> None:
    sqlite_catalog.create_namespace("ns")
    spec = PartitionSpec(
        PartitionField(source_id=1, field_id=1000, transform=IdentityTransform(), name="id_p")
    )
    table = sqlite_catalog.create_table("ns.p", schema=id_v_iceberg_schema(), partition_spec=spec)
    table.append(id_v_rows([1, 2, 3]))
    table.append(id_v_rows([4, 5]))
    table.delete("id = 4")
    storage_before = storage_files(table)
    before = reachable(table, [s.snapshot_id for s in table.snapshots()], live_only=False)
    expire_snapshots(table, keep_duration_ms=0)
    kept = [s.snapshot_id for s in table.snapshots()]
    assert len(kept) == 1
    assert storage_before - storage_files(table) == before - reachable(table, kept)
    assert sorted(table.scan().to_arrow().column("id").to_pylist()) == [1, 2, 3, 5]
    assert {norm(t.file.file_path) for t in table.scan().plan_files()} <= storage_files(table)


def test_concurrent_appends_during_expiry_lose_nothing(lake: Catalog) -> None:
    table = new_table(lake, "ns.busy", ID_V_SCHEMA)
    for i in range(3):
        table.append(id_v_rows([i]))
    writer = lake.load_table("ns.busy")

    def expire() -> int:
        table.refresh()
        return len(expire_snapshots(table, keep_duration_ms=0).expired_snapshot_ids)

    expired, appended = while_appending(writer, range(100, 130), expire, repeat=6)
    assert appended and expired > 0
    table.refresh()
    assert set(read_table(table).column("id").to_pylist()) == {0, 1, 2, *appended}
    for snapshot in table.snapshots():
        read_table(table, snapshot_id=snapshot.snapshot_id)


def test_statistics_files_follow_their_snapshot(sqlite_catalog: Catalog) -> None:
    from pyiceberg.table.statistics import StatisticsFile

    from airflow_provider_amoro.maintenance import clean_orphan_files

    sqlite_catalog.create_namespace("ns")
    props = {"clean-orphan-file.enabled": "true"}
    table = sqlite_catalog.create_table("ns.s", schema=ID_V_SCHEMA, properties=props)
    for i in range(3):
        table.append(id_v_rows([i]))
    first, _, last = (s.snapshot_id for s in table.snapshots())
    paths = {}
    for sid in (first, last):
        path = f"{table.location().rstrip('/')}/metadata/stats-{sid}.puffin"
        with table.io.new_output(path).create() as out:
            out.write(b"PFA1-test-statistics")
        paths[sid] = path
        stats = StatisticsFile(
            snapshot_id=sid,
            statistics_path=path,
            file_size_in_bytes=20,
            file_footer_size_in_bytes=4,
            blob_metadata=[],
        )
        table.update_statistics().set_statistics(stats).commit()
    later = int(time.time() * 1000) + 3 * 86_400_000
    assert clean_orphan_files(table, now=later).orphan_files == 0  # statistics files are referenced
    result = expire_snapshots(table, keep_duration_ms=0)
    assert result.deleted_statistics_files == 1
    remaining = storage_files(table)
    assert norm(paths[first]) not in remaining and norm(paths[last]) in remaining
    assert [s.snapshot_id for s in table.metadata.statistics] == [last]


def test_flink_checkpoint_and_last_non_maintenance_snapshots_are_kept(sqlite_catalog: Catalog) -> None:
    table = new_table(sqlite_catalog, "ns.f", ID_V_SCHEMA)
    table.append(id_v_rows([0]))
    table.append(id_v_rows([1]), snapshot_properties={"flink.max-committed-checkpoint-id": "7"})
    table.append(id_v_rows([2]))
    ids = [s.snapshot_id for s in table.snapshots()]
    plan = plan_expiry(table.metadata, now_ms=int(time.time() * 1000) + 1000, min_count=1, keep_duration_ms=0)
    assert plan.expire_ids == {ids[0]}  # the Flink checkpoint snapshot and everything newer stay
    # commits of Amoro's own (optimizing, data expiry, dangling deletes) do not count as the last commit
    table.append(id_v_rows([3]), snapshot_properties={"snapshot-producer": "DATA_EXPIRATION"})
    table.append(id_v_rows([4]), snapshot_properties={"snapshot-producer": "OPTIMIZE"})
    plan = plan_expiry(table.metadata, now_ms=int(time.time() * 1000) + 1000, min_count=1, keep_duration_ms=0)
    assert plan.expire_ids == {ids[0]}
    table.append(id_v_rows([5]), snapshot_properties={"flink.max-committed-checkpoint-id": "8"})
    result = expire_snapshots(table, now=int(time.time() * 1000) + 1000, keep_duration_ms=0)
    assert len(result.expired_snapshot_ids) == 5 and len(table.snapshots()) == 1


def test_old_metadata_files_with_delete_after_commit(lake: Catalog) -> None:
    lake.create_namespace("ns")
    props = {
        "write.metadata.previous-versions-max": "2",
        "write.metadata.delete-after-commit.enabled": "true",
    }
    table = lake.create_table("ns.meta", schema=ID_V_SCHEMA, properties=props)
    for i in range(5):
        table.append(id_v_rows([i]))
    root = table.location().rstrip("/")
    # pyiceberg deleted versions 0..2 at commit; leave an old one behind as another engine might
    with table.io.new_output(f"{root}/metadata/00001-left-behind.metadata.json").create() as out:
        out.write(b"{}")
    with table.io.new_output(f"{root}/metadata/00099-in-flight.metadata.json").create() as out:
        out.write(b"{}")  # a concurrent writer's next version: higher, never touched
    dry = expire_snapshots(table, keep_duration_ms=0, dry_run=True)
    assert dry.deleted_metadata_files == 1
    result = expire_snapshots(table, keep_duration_ms=0)
    logged = {norm(e.metadata_file) for e in table.metadata.metadata_log} | {norm(table.metadata_location)}
    on_storage = {p for p in storage_files(table) if p.endswith(".metadata.json")}
    assert on_storage == logged | {norm(f"{root}/metadata/00099-in-flight.metadata.json")}
    assert result.deleted_metadata_files == 1
    assert content_hash(read_table(table)) == content_hash(id_v_rows(range(5)))


def test_results_are_json_safe(sqlite_catalog: Catalog) -> None:
    import json

    from airflow_provider_amoro.maintenance import (
        clean_dangling_delete_files,
        clean_orphan_files,
        create_auto_tags,
        expire_data,
    )

    table = new_table(sqlite_catalog, "ns.j", ID_V_SCHEMA)
    table.append(id_v_rows([1]))
    table.append(id_v_rows([2]))
    results = [
        expire_snapshots(table, keep_duration_ms=0),
        clean_orphan_files(table, force=True),
        clean_dangling_delete_files(table),
        expire_data(table),
        create_auto_tags(table),
    ]
    for result in results:
        assert json.loads(json.dumps(result.to_dict())) == result.to_dict()
    assert results[0].to_dict()["deleted_files"] == results[0].deleted_files == 1  # one manifest list


def test_a_concurrent_expiry_is_a_short_retryable_conflict(sqlite_catalog: Catalog) -> None:
    """Two expiries racing: the loser's commit is a CommitFailedException (retried by
    ``expire_snapshots``), with a short message, not pyiceberg's ValueError listing every snapshot."""
    from pyiceberg.exceptions import CommitFailedException

    from airflow_provider_amoro.maintenance.expire import _commit_expiry

    table = new_table(sqlite_catalog, "ns.t", ID_V_SCHEMA)
    for i in range(30):
        table.append(id_v_rows([i]))
    stale = sqlite_catalog.load_table("ns.t")
    now = table.current_snapshot().timestamp_ms + 10
    plan = plan_expiry(
        stale.metadata, now_ms=now, min_count=1, keep_duration_ms=0, protected_snapshot_id=None
    )
    assert len(plan.expire_ids) == 29
    expire_snapshots(sqlite_catalog.load_table("ns.t"), now=now, keep_min_count=1, keep_duration_ms=0)
    with pytest.raises(
        CommitFailedException, match="29 of the 29 snapshots to expire were removed concurrently"
    ) as err:
        _commit_expiry(stale, plan)
    assert len(str(err.value)) < 300
    # the stale table object expires fine: expire_snapshots plans again on fresh metadata
    result = expire_snapshots(stale, now=now, keep_min_count=1, keep_duration_ms=0)
    assert result.expired_snapshot_ids == []
    assert table.scan().to_arrow().num_rows == 30
