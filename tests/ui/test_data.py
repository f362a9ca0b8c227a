"""The data layer: the cache read through its typed class, runtime/cache precedence, histogram bins."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_provider_amoro.dag_factory.cache import CachedTable, write_cache
from airflow_provider_amoro.ui import data, sources


def _entry(pending: bool | None = True) -> sources.ListedTable:
    summary = {"total-data-files": "10", "total-delete-files": "2", "total-files-size": "1200"}
    return sources.ListedTable(
        "c", CachedTable("ns.t", summary=summary, health=40, pending=pending), synced_ms=2_000
    )


def test_cache_entry_becomes_a_row() -> None:
    s = data.summary_from_entry(_entry())
    assert (s.namespace, s.table, s.data_files, s.delete_files, s.total_size) == ("ns", "t", 10, 2, 1200)
    assert s.avg_file_size == 100 and s.health_score == 40 and s.status == "PENDING"
    assert s.optimizer_group == "default" and s.dag_id == "amoro__c__ns__t"
    idle = data.summary_from_entry(_entry(pending=False))
    assert idle.status == "IDLE" and idle.pending_reason is None


def test_runtime_wins_unless_the_cache_evaluated_later() -> None:
    older_eval = {
        "status": "IDLE",
        "pending": {"kind": "minor", "evaluated_ms": 1_000},
        "last_minor_ms": 1_500,
    }
    # The sync (2_000) evaluated after the runtime's evaluation and commit: its PENDING stands.
    s = data.summary_from_entry(_entry(), older_eval)
    assert s.status == "PENDING" and s.health_score == 40 and s.last_optimized == 1_500
    # A commit after the sync: the runtime's IDLE stands.
    newer_commit = {**older_eval, "last_minor_ms": 3_000}
    s = data.summary_from_entry(_entry(), newer_commit)
    assert s.status == "IDLE" and s.pending_kind is None and s.last_optimized == 3_000
    # Optimizing right now: always the runtime's status.
    running = {
        "status": "MINOR_OPTIMIZING",
        "pending": {"kind": "minor", "health_score": 55, "evaluated_ms": 1},
    }
    s = data.summary_from_entry(_entry(), running)
    assert s.status == "MINOR_OPTIMIZING" and s.pending_kind == "minor" and s.health_score == 55


def test_the_cache_is_read_through_the_catalog_syncs_own_format(tmp_path: Path) -> None:
    written = CachedTable("db.x", summary={"snapshot_id": 12345678901234567}, health=70, cost=5)
    write_cache(tmp_path, "a", {"db.x": written})
    doc = json.loads((tmp_path / "catalog__a.json").read_text())
    doc["synced_at"] = "2026-01-01T00:00:00+00:00"
    (tmp_path / "catalog__a.json").write_text(json.dumps(doc))
    # Not the catalog sync's table lists: another name, another version, not JSON.
    (tmp_path / "b.json").write_text('{"version": 1, "tables": {"db.y": {"health": 1}}}')
    (tmp_path / "catalog__c.json").write_text('{"version": 99, "tables": {"db.z": {}}}')
    (tmp_path / "catalog__d.json").write_text("{not json")
    got = sources.read_cache(tmp_path)
    assert got is not None
    assert [(e.conn_id, e.table) for e in got.entries] == [("a", written)]
    (x,) = got.entries
    assert x.synced_ms == got.updated_ms == 1_767_225_600_000
    row = data.summary_from_entry(x)
    assert (row.snapshot_id, row.health_score, row.cost) == (12345678901234567, 70, 5)  # no float rounding


def test_histogram_bins_cover_every_file() -> None:
    sizes = [1, 1000, 5000, 2**20, 3 * 2**20, 130 * 2**20]
    bins = data.size_histogram(sizes)
    assert len(bins) <= 12
    assert sum(b.count for b in bins) == len(sizes) and sum(b.bytes for b in bins) == sum(sizes)
    assert bins[0].lower == 0
    for b in bins:
        assert b.upper is not None and b.lower < b.upper
    for s in sizes:
        (home,) = [b for b in bins if b.lower <= s < (b.upper or 0)]
        assert home.count >= 1
    assert data.size_histogram([]) == []


def test_history_chart_stays_small_with_many_snapshots() -> None:
    from airflow_provider_amoro.ui.charts import MAX_DOTS, history_chart
    from airflow_provider_amoro.ui.models import HistoryPoint, TableHistory

    def points(n: int) -> TableHistory:
        return TableHistory(
            points=[
                HistoryPoint(
                    snapshot_id=i,
                    timestamp_ms=i,
                    files=i % 50,
                    data_files=i % 50,
                    delete_files=0,
                    avg_file_size=1000 + i,
                    operation="append",
                )
                for i in range(n)
            ]
        )

    few = str(history_chart(points(10)))
    assert few.count('class="dot files"') == 10 and "<polyline" in few
    many = str(history_chart(points(MAX_DOTS + 1)))
    assert 'class="dot' not in many and many.count("<polyline") == 2
    assert "No snapshot" in str(history_chart(TableHistory(points=[])))
