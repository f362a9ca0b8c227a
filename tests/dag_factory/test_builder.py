"""The shape of generated DAGs, built from a synthetic cache (no catalog, no metadata DB)."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_amoro.assets import table_asset_uri, table_change_asset_uri
from airflow_provider_amoro.dag_factory import build_dags, loads
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


ALL_TASKS = [
    "clean_dangling_delete_files",
    "clean_orphan_files",
    "commit",
    "create_tags",
    "evaluate",
    "execute",
    "expire_data",
    "expire_snapshots",
    "optimizing_failed",
    "plan",
    "resolve",
]


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
    assert dag.is_paused_upon_creation is False  # runs (and its watcher lives) from the first parse
    assert sorted(dag.task_dict) == ALL_TASKS  # every action, whatever the properties
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
        assert t[action].maintenance_interval > timedelta(0)
        assert t[action].property_overrides == t["evaluate"].property_overrides
    execute = t["execute"].partial_kwargs
    assert (execute["pool"], execute["queue"], execute["max_active_tis_per_dagrun"]) == (
        "amoro_optimizer_default",
        "optimizers",
        2,
    )
    # the cost does not enter the DAG (it would write a new DAG version at every sync)
    assert execute.get("priority_weight", 1) == 1 and t["evaluate"].priority_weight == 1
    assert t["evaluate"].pool == "default_pool"
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


def test_colliding_and_unicode_names_get_unique_stable_readable_dag_ids(tmp_path: Path) -> None:
    names = [
        "sales.t x",
        "sales.t_x",
        "sales.a__b.c",
        "sales.a.b__c",
        "sales.заказы",
        "sales.注文",
        "sales." + "x" * 300,
    ]
    tables = {n: CachedTable(n) for n in names}
    dags = make(tmp_path, tables=tables)
    table_dags = {d.dag_id: d for k, d in dags.items() if k != "amoro__catalog_sync"}
    assert len(table_dags) == len(names)  # none lost, none merged
    ids = set(table_dags)
    assert "amoro__lake__sales__t_x" in ids  # plain names keep their plain id
    assert "amoro__lake__sales__заказы" in ids and "amoro__lake__sales__注文" in ids  # unicode kept
    hashed = sorted(i for i in ids if "__h" in i)
    assert len(hashed) == 4, hashed  # "t x", both "__" names, the long one
    assert all(len(i) <= 250 for i in ids)
    assert any(i.startswith("amoro__lake__sales__t_x__h") for i in hashed)
    # stable: the same names give the same ids in another parse
    assert set(make(tmp_path / "again", tables=tables)) - {"amoro__catalog_sync"} == ids


def test_a_table_with_a_bad_setting_gets_a_placeholder_and_the_others_carry_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tables = {
        "sales.orders": CachedTable("sales.orders", properties={"self-optimizing.group": "gpu"}),
        "sales.good": CachedTable("sales.good"),
    }
    with caplog.at_level("ERROR"):
        dags = make(tmp_path, tables=tables)
    assert sorted(dags["amoro__lake__sales__good"].task_dict) == ALL_TASKS
    broken = dags["amoro__lake__sales__orders"]
    assert list(broken.task_dict) == ["configuration_error"]
    assert broken.is_paused_upon_creation is True
    # the table's asset stays referenced by a DAG, so Airflow keeps its runtime state
    assert [a.uri for a in broken.task_dict["configuration_error"].inlets] == [
        table_asset_uri("lake", "sales.orders")
    ]
    assert "optimizer group 'gpu'" in (broken.doc_md or "")
    assert "table lake.sales.orders skipped" in caplog.text and "optimizer group 'gpu'" in caplog.text


def test_sync_that_changes_only_costs_creates_no_new_dag_version(tmp_path: Path) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    def serialized(cost: int, pending: bool) -> Any:
        tables = {
            "sales.orders": CachedTable(
                "sales.orders",
                properties={"table-expire.enabled": "false"},
                cost=cost,
                pending=pending,
                health=10,
            )
        }
        dag = make(tmp_path, tables=tables)["amoro__lake__sales__orders"]
        return DagSerialization.to_dict(dag)

    assert serialized(1, False) == serialized(900 * 1024 * 1024, True)


def test_serialized_table_dag_carries_no_python_source(tmp_path: Path) -> None:
    """Hooks are operator methods: Airflow would serialize a ``pre_execute=`` callable as its source
    (``inspect.getsource`` per task per parse), and a change to that source would make a new DAG
    version of every table."""
    from airflow.serialization.serialized_objects import DagSerialization

    dag = make(tmp_path, tables={"sales.orders": CachedTable("sales.orders")})["amoro__lake__sales__orders"]
    tasks = {t["__var"]["task_id"]: t["__var"] for t in DagSerialization.to_dict(dag)["dag"]["tasks"]}
    assert sorted(tasks) == ALL_TASKS
    for task_id, fields in tasks.items():
        hooks = {k for k in fields if k in ("_pre_execute_hook", "_post_execute_hook")}
        assert not hooks, (task_id, hooks)
        sources = [k for k, v in fields.items() if isinstance(v, str) and "def " in v]
        assert not sources, (task_id, sources)
    # the evaluate task still skips while a failure's backoff runs: the check is its method now
    from airflow_provider_amoro.dag_factory.builder import FailureBackoff

    assert type(dag.task_dict["evaluate"]).__name__ == "EvaluateOptimizingOperator"
    assert isinstance(dag.task_dict["evaluate"], FailureBackoff)


def test_property_changes_do_not_change_the_task_set(tmp_path: Path) -> None:
    off = {
        "gc.enabled": "false",
        "table-expire.enabled": "false",
        "clean-dangling-delete-files.enabled": "false",
    }
    on = {
        "clean-orphan-file.enabled": "true",
        "data-expire.enabled": "true",
        "tag.auto-create.enabled": "true",
    }
    a = make(tmp_path, tables={"sales.t": CachedTable("sales.t", properties=off)})["amoro__lake__sales__t"]
    b = make(tmp_path, tables={"sales.t": CachedTable("sales.t", properties=on)})["amoro__lake__sales__t"]
    assert sorted(a.task_dict) == sorted(b.task_dict) == ALL_TASKS


def test_paused_at_creation_is_configurable_per_catalog_and_table(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    write_cache(cache, "lake", {n: CachedTable(n) for n in ("sales.a", "sales.b")})
    text = f"""
cache_dir: {cache}
optimizer_groups:
  default: {{slots: 4}}
catalogs:
  lake:
    include: ["sales.*"]
    paused_at_creation: true
    tables:
      "sales.b": {{paused_at_creation: false}}
catalog_sync:
  paused_at_creation: true
"""
    dags = build_dags(loads(text))
    assert dags["amoro__lake__sales__a"].is_paused_upon_creation is True
    assert dags["amoro__lake__sales__b"].is_paused_upon_creation is False
    assert dags["amoro__catalog_sync"].is_paused_upon_creation is True


def test_worker_builds_only_its_own_dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = {n: CachedTable(n) for n in ("sales.a", "sales.b", "sales.c")}
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "amoro__lake__sales__b")
    assert set(make(tmp_path, tables=tables)) == {"amoro__lake__sales__b"}
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "amoro__catalog_sync")
    assert set(make(tmp_path, tables=tables)) == {"amoro__catalog_sync"}


def test_group_executor_and_executor_config_reach_the_execute_task(tmp_path: Path) -> None:
    tables = {"sales.orders": CachedTable("sales.orders")}
    cache = tmp_path / "cache"
    write_cache(cache, "lake", tables)
    cfg = loads(
        textwrap.dedent(
            f"""
            cache_dir: {cache}
            optimizer_groups:
              default:
                slots: 4
                executor: KubernetesExecutor
                executor_config: {{note: big-pods}}
                max_input_bytes: 1073741824
            catalogs:
              lake:
                include: ["sales.*"]
            """
        )
    )
    execute = build_dags(cfg)["amoro__lake__sales__orders"].task_dict["execute"].partial_kwargs
    assert execute["executor"] == "KubernetesExecutor"
    assert execute["executor_config"] == {"note": "big-pods"}
    # the group's input cap bounds each optimizing process of its tables
    assert build_dags(cfg)["amoro__lake__sales__orders"].task_dict["plan"].max_input_bytes == 1 << 30


def test_shards_split_the_tables_over_dag_files_without_overlap(tmp_path: Path) -> None:
    from airflow_provider_amoro.dag_factory import ConfigError

    cache = tmp_path / "cache"
    names = [f"sales.t{i}" for i in range(40)]
    write_cache(cache, "lake", {n: CachedTable(n) for n in names})
    cfg = loads(
        f"""
cache_dir: {cache}
shards: 3
optimizer_groups:
  default: {{slots: 4}}
catalogs:
  lake:
    include: ["sales.*"]
"""
    )
    parts = [set(build_dags(cfg, shard=i)) for i in range(3)]
    assert "amoro__catalog_sync" in parts[0] and all("amoro__catalog_sync" not in p for p in parts[1:])
    tables = [p - {"amoro__catalog_sync"} for p in parts]
    assert all(tables)  # every file gets some
    assert sum(len(p) for p in tables) == len(names) == len(set().union(*tables))  # no overlap, none lost
    assert [set(build_dags(cfg, shard=i)) for i in range(3)] == parts  # stable
    with pytest.raises(ConfigError, match=r"shards: is 3: each DAG file must call generate_dags"):
        build_dags(cfg)


def test_priority_weight_comes_from_the_yaml_not_from_the_cost(tmp_path: Path) -> None:
    tables = {
        "sales.vip": CachedTable("sales.vip", cost=1),
        "sales.big": CachedTable("sales.big", cost=10**12),
    }
    cache = tmp_path / "cache"
    write_cache(cache, "lake", tables)
    text = f"""
cache_dir: {cache}
optimizer_groups:
  default: {{slots: 4}}
catalogs:
  lake:
    include: ["sales.*"]
    tables:
      "sales.vip": {{priority_weight: 50}}
"""
    dags = build_dags(loads(text))
    assert dags["amoro__lake__sales__vip"].task_dict["execute"].partial_kwargs["priority_weight"] == 50
    assert dags["amoro__lake__sales__vip"].task_dict["evaluate"].priority_weight == 50
    assert dags["amoro__lake__sales__big"].task_dict["execute"].partial_kwargs["priority_weight"] == 1
