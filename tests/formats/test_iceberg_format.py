"""The format seam on real Iceberg tables: identity, structure, files, history, change token."""

from __future__ import annotations

from pathlib import Path

import pytest
from optimizing._tables import append_many, make_table
from pyiceberg.catalog import Catalog

from airflow_provider_amoro.formats import FileKind, FormatName, IcebergTable, TableFormat, open_table
from airflow_provider_amoro.optimizing import optimize
from airflow_provider_amoro.properties import PRODUCER_OPTIMIZE, OptimizingKind
from airflow_provider_amoro.testing.deletes import add_position_deletes, live_data_files


def test_iceberg_table_through_the_seam(catalog: Catalog) -> None:
    table = make_table(catalog, "db.events", spec="identity")
    fmt = open_table(table)
    assert isinstance(fmt, TableFormat)
    assert fmt.format is FormatName.ICEBERG
    assert fmt.identifier == "db.events"
    assert fmt.uuid == str(table.metadata.table_uuid)
    assert fmt.format_label == "iceberg v2"
    assert fmt.current_snapshot() is None
    assert fmt.totals().files == 0
    assert list(fmt.files()) == []
    assert [c.name for c in fmt.columns()] == ["id", "cat", "day", "payload"]
    assert fmt.partition_fields() == ["identity(cat)"]
    empty_token = fmt.change_token()

    table = append_many(table, 5, n=10, cats=("a", "b"))
    fmt = open_table(table)
    assert fmt.change_token() != empty_token
    snapshots = fmt.snapshots()
    assert len(snapshots) == 5
    assert [s.operation for s in snapshots] == ["append"] * 5
    assert snapshots[-1].snapshot_id == table.current_snapshot().snapshot_id
    assert snapshots[-1].parent_id == snapshots[-2].snapshot_id
    assert [s.sequence_number for s in snapshots] == [1, 2, 3, 4, 5]
    assert fmt.branch_head() == snapshots[-1].snapshot_id
    assert fmt.branch_head("no-such-branch") is None
    assert fmt.snapshot(snapshots[1].snapshot_id) == snapshots[1]
    assert fmt.snapshot(12345) is None
    totals = fmt.totals()
    files = list(fmt.files())
    assert totals.data_files == len(files) == 10  # two partitions per append
    assert totals.records == 50 == sum(f.record_count for f in files)
    assert totals.total_size == sum(f.size_bytes for f in files)
    assert {f.partition for f in files} == {"cat=a", "cat=b"}
    assert {f.kind for f in files} == {FileKind.DATA}


def test_delete_files_and_optimize_commits_are_told_apart(catalog: Catalog) -> None:
    table = append_many(make_table(catalog, "db.t"), 3, n=10)
    victim = live_data_files(table)[0].file_path
    table = add_position_deletes(table, {victim: [0, 1]})
    fmt = open_table(table)
    kinds = sorted(f.kind.value for f in fmt.files())
    assert kinds == ["data", "data", "data", "position-deletes"]
    assert fmt.totals().delete_files == 1

    optimize(table, kind="minor")
    table = catalog.load_table("db.t")
    fmt = open_table(table)
    head = fmt.current_snapshot()
    assert head is not None and head.producer == PRODUCER_OPTIMIZE
    assert sum(f.record_count for f in fmt.files() if f.kind is FileKind.DATA) == 28


def test_capabilities_by_format_version_and_mixed_store(catalog: Catalog) -> None:
    v1 = open_table(make_table(catalog, "db.v1", format_version=1))
    assert v1.capabilities.can_optimize
    assert v1.capabilities.optimizing_kinds == frozenset(OptimizingKind)
    assert "expire_snapshots" in v1.capabilities.maintenance_actions

    mixed = open_table(
        make_table(
            catalog,
            "db.mixed",
            properties={"table-format": "MIXED_ICEBERG", "mixed-format.table-store": "base"},
        )
    )
    assert not mixed.capabilities.can_optimize
    assert "MIXED_ICEBERG base store" in (mixed.capabilities.reason or "")


def test_format_v3_is_not_optimized(catalog: Catalog) -> None:
    # pyiceberg 0.12 cannot create v3 tables; read a v2 table's metadata as v3, as a v3 writer leaves it.
    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadataV3

    v2 = make_table(catalog, "db.v3")
    metadata = TableMetadataV3.model_validate(
        {**v2.metadata.model_dump(), "format-version": 3, "next-row-id": 0}
    )
    v3 = Table(v2.name(), metadata, v2.metadata_location, v2.io, catalog)
    caps = IcebergTable(v3).capabilities
    assert not caps.can_optimize
    assert "v3" in (caps.reason or "")


def test_open_table_refuses_unknown_objects(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not a table of a supported format: PosixPath"):
        open_table(tmp_path)
