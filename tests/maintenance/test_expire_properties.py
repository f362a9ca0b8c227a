"""Property-based check of snapshot expiry on random table histories (local warehouse).

For any history of appends, pyiceberg deletes and overwrites, position deletes and tags, and any
retention, expiry must delete exactly the files that only expired snapshots reached (computed here
independently with pyiceberg's ``inspect.entries``) and every kept snapshot must read the same.
"""

from __future__ import annotations

from typing import Any

from builders import ID_V_SCHEMA, id_v_rows, new_table
from catalogs import make_catalog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.table import Table

from airflow_provider_amoro.maintenance import expire_snapshots
from airflow_provider_amoro.testing.deletes import add_position_deletes, live_data_files

from .helpers import reachable, snapshot_hashes, storage_files

OPS = st.lists(
    st.sampled_from(["append", "append", "delete", "overwrite", "posdelete", "tag"]), min_size=2, max_size=8
)


def _apply(table: Table, op: str, step: int) -> None:
    base = step * 10
    if op == "append" or table.current_snapshot() is None:
        table.append(id_v_rows(range(base, base + 3)))
    elif op == "delete":
        table.delete(f"id >= {base - 15}")
    elif op == "overwrite":
        table.overwrite(id_v_rows(range(base, base + 2), tag="o"))
    elif op == "posdelete":
        files = [f for f in live_data_files(table) if f.record_count > 1]
        if files:
            add_position_deletes(table, {files[0].file_path: [0]})
    elif op == "tag":
        table.manage_snapshots().create_tag(table.current_snapshot().snapshot_id, f"t{step}").commit()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, min_count=st.integers(min_value=1, max_value=3))
def test_random_histories(tmp_path_factory: Any, ops: list[str], min_count: int) -> None:
    catalog = make_catalog("sqlite", tmp_path_factory.mktemp("prop"))
    table = new_table(catalog, "ns.t", ID_V_SCHEMA)
    for step, op in enumerate(ops, start=1):
        _apply(table, op, step)
    before_ids = [s.snapshot_id for s in table.snapshots()]
    hashes = snapshot_hashes(table)
    all_reached = reachable(table, before_ids, live_only=False)
    storage_before = storage_files(table)

    result = expire_snapshots(table, keep_min_count=min_count, keep_duration_ms=0)

    kept = [s.snapshot_id for s in table.snapshots()]
    assert set(kept) | set(result.expired_snapshot_ids) == set(before_ids)
    assert storage_before - storage_files(table) == all_reached - reachable(table, kept)
    assert result.failed_deletes == 0
    for sid in kept:
        assert snapshot_hashes_for(table, sid) == hashes[sid]


def snapshot_hashes_for(table: Table, snapshot_id: int) -> str:
    from airflow_provider_amoro.testing.reader import content_hash, read_table

    return content_hash(read_table(table, snapshot_id=snapshot_id))
