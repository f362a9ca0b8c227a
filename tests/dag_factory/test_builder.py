"""The shape of generated DAGs, built from a synthetic cache (no catalog, no metadata DB)."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_amoro.assets import table_asset_uri, table_change_asset_uri
from airflow_provider_amoro.dag_factory import ConfigError, build_dags, loads
from airflow_provider_amoro.dag_factory.cache import CachedTable, write_cache


def make(tmp_path: Path, extra: str = "", tables: dict[str, CachedTable] | None = None) -> dict[str, Any]:
    cache = tmp_path / "cache"
    write_cache(cache, "lake", tables or {})
    text = textwrap.dedent(
        f"""
        cache_dir: {cache}
        optimizer_groups:
          default: {{slots: 4, queue: optimizers}}
        catalogs:
          lake:
            include: ["sales.*"]
        """
    )
    return build_dags(loads(text + textwrap.dedent(extra)))


def test_table_dag_shape_pool_queue_quota_priority_and_trigger_rules(tmp_path: Path) -> None:
    tables = {
        "sales.orders": CachedTable(
            "sales.orders",
            properties={"self-optimizing.quota": "0.5", "clean-orphan-file.enabled": "true"},
            cost=50 * 1024 * 1024,
        )
    }
    dag = make(tmp_path, tables=tables)["amoro__lake__sales__orders"]
    assert dag.max_active_runs == 1
    assert sorted(dag.task_dict) == [
        "clean_dangling_delete_files",
        "clean_orphan_files",
        "commit",
        "evaluate",
        "execute",
        "expire_snapshots",
        "optimizing_failed",
        "plan",
        "resolve",
    ]
    t = dag.task_dict
    # a failed pipeline task fails the run through optimizing_failed; maintenance does not wait on it
    pipeline = {"resolve", "evaluate", "plan", "execute", "commit"}
    assert t["optimizing_failed"].upstream_task_ids == pipeline
    assert t["optimizing_failed"].trigger_rule == "one_failed"
    assert not t["optimizing_failed"].downstream_task_ids
    # resolve -> evaluate -> plan -> execute -> commit -> maintenance chain, in this order
    assert t["evaluate"].upstream_task_ids == {"resolve"}
    assert t["plan"].upstream_task_ids == {"evaluate"}
    assert t["execute"].upstream_task_ids == {"plan"}
    assert t["commit"].upstream_task_ids == {"execute"}
    assert t["expire_snapshots"].upstream_task_ids == {"commit"}
    assert t["clean_dangling_delete_files"].upstream_task_ids == {"expire_snapshots"}
    assert t["clean_orphan_files"].upstream_task_ids == {"clean_dangling_delete_files"}
    for action in ("expire_snapshots", "clean_dangling_delete_files", "clean_orphan_files"):
        assert t[action].trigger_rule == "none_failed"
        assert t[action]._pre_execute_hook.interval > timedelta(0)
        assert t[action].property_overrides == t["evaluate"].property_overrides
    execute = t["execute"].partial_kwargs
    assert (execute["pool"], execute["queue"], execute["max_active_tis_per_dagrun"]) == (
        "amoro_optimizer_default",
        "optimizers",
        2,
    )
    assert execute["priority_weight"] == 51 and execute["weight_rule"] == "absolute"
    assert t["evaluate"].priority_weight == 51 and t["evaluate"].pool == "default_pool"
    # the table asset is an outlet of the committing tasks, never the DAG's schedule
    uri = table_asset_uri("lake", "sales.orders")
    assert uri in [a.uri for a in t["commit"].outlets]
    schedule_uris = [a.uri for a in dag.timetable.asset_condition.objects]
    assert schedule_uris == [table_change_asset_uri("lake", "sales.orders")]
    assert dag.timetable.timetable.delta == timedelta(hours=1)  # the fallback schedule


@pytest.mark.parametrize(
    ("defaults", "kind"),
    [
        ("schedule: '*/5 * * * *'\n  watch_changes: false", "CronTriggerTimetable"),
        ("schedule: 30min\n  watch_changes: false", "DeltaTriggerTimetable"),
        ("schedule: off\n  watch_changes: true", "AssetTriggeredTimetable"),
        ("schedule: '@daily'\n  watch_changes: true", "AssetOrTimeSchedule"),
        ("schedule: off\n  watch_changes: false", "NullTimetable"),
    ],
)
def test_schedule_variants(tmp_path: Path, defaults: str, kind: str) -> None:
    tables = {"sales.orders": CachedTable("sales.orders")}
    dag = make(tmp_path, f"defaults:\n  {defaults}\n", tables)["amoro__lake__sales__orders"]
    assert type(dag.timetable).__name__ == kind


def test_only_selected_tables_and_explicit_includes_get_dags(tmp_path: Path) -> None:
    tables = {n: CachedTable(n) for n in ("sales.orders", "sales.tmp_x", "hr.people")}
    dags = make(
        tmp_path,
        tables=tables,
        extra="",
    )
    assert set(dags) == {"amoro__catalog_sync", "amoro__lake__sales__orders", "amoro__lake__sales__tmp_x"}
    sync = dags["amoro__catalog_sync"]
    assert list(sync.task_dict) == ["sync__lake"]


def test_two_tables_mapping_to_one_dag_id_is_an_error(tmp_path: Path) -> None:
    tables = {n: CachedTable(n) for n in ("sales.t x", "sales.t_x")}
    with pytest.raises(ConfigError, match=r"both map to DAG id 'amoro__lake__sales__t_x'"):
        make(tmp_path, tables=tables)


def test_cached_group_must_be_configured(tmp_path: Path) -> None:
    tables = {"sales.orders": CachedTable("sales.orders", properties={"self-optimizing.group": "gpu"})}
    with pytest.raises(ConfigError, match="optimizer group 'gpu'"):
        make(tmp_path, tables=tables)
