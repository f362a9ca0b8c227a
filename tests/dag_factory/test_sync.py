"""Discovery: the catalog sync lists real tables into the cache; parsing then builds their DAGs.

Runs on the parametrised ``catalog`` fixture (SQLite and PostgreSQL SQL catalogs).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import set_connection, small_file_table
from pyiceberg.catalog import Catalog

from airflow_provider_amoro.dag_factory import build_dags, loads
from airflow_provider_amoro.dag_factory.cache import CachedTable, cache_file, read_cache, write_cache
from airflow_provider_amoro.dag_factory.sync import estimate_cost, sync_catalog


def config_for(cache: Path, evaluate: bool = True) -> Any:
    return loads(
        textwrap.dedent(
            f"""
            cache_dir: {cache}
            catalogs:
              lake:
                include: ["sales.*", "ops.events"]
                exclude: ["sales.tmp_*"]
                tables:
                  "sales.big": {{properties: {{self-optimizing.group: big}}}}
            optimizer_groups:
              default: {{slots: 2}}
              big: {{slots: 4, queue: heavy}}
            catalog_sync: {{evaluate: {str(evaluate).lower()}}}
            """
        )
    )


def test_sync_discovers_selected_tables_and_parse_builds_their_dags(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, "lake", catalog)
    small_file_table(catalog, "sales.orders", files=6)
    small_file_table(catalog, "sales.big", files=2)
    small_file_table(catalog, "sales.tmp_scratch", files=1)
    small_file_table(catalog, "hr.people", files=1)
    config = config_for(tmp_path / "cache")

    # before any sync only the explicit include (ops.events, not even existing yet) has a DAG
    assert set(build_dags(config)) == {"amoro__catalog_sync", "amoro__lake__ops__events"}

    metrics = sync_catalog(config, "lake")
    assert metrics["listed"] == 4 and metrics["selected"] == 2 and metrics["failed"] == 0
    assert metrics["added"] == ["sales.big", "sales.orders"]
    cache = read_cache(config.cache_dir, "lake")
    orders = cache.tables["sales.orders"]
    assert orders.properties["self-optimizing.target-size"] == str(1024 * 1024)
    assert orders.summary["total-data-files"] == "6"
    assert orders.pending is True and orders.cost is not None and orders.cost > 0
    assert orders.health is not None and orders.health < 100
    assert orders.cost > (cache.tables["sales.big"].cost or 0) > 0  # six small files cost more than two

    # parse: one DAG per discovered table; group, queue and priority come from config + cache
    dags = build_dags(config)
    assert set(dags) == {
        "amoro__catalog_sync",
        "amoro__lake__ops__events",
        "amoro__lake__sales__orders",
        "amoro__lake__sales__big",
    }
    big = dags["amoro__lake__sales__big"].task_dict["execute"].partial_kwargs
    assert (big["pool"], big["queue"], big["max_active_tis_per_dagrun"]) == (
        "amoro_optimizer_big",
        "heavy",
        2,
    )
    # the cost is in the table list (for the Lakehouse page), never in the DAG: a sync that only
    # changes costs must not write new DAG versions
    for dag_id in ("amoro__lake__sales__orders", "amoro__lake__sales__big"):
        assert dags[dag_id].task_dict["execute"].partial_kwargs.get("priority_weight", 1) == 1

    # a dropped table leaves the cache at the next sync (and its DAG the next parse)
    catalog.drop_table("sales.big")
    metrics = sync_catalog(config, "lake")
    assert metrics["removed"] == ["sales.big"]
    assert "amoro__lake__sales__big" not in build_dags(config)


def test_catalog_sync_dag_runs_in_airflow_and_writes_the_cache(
    airflow_db: Any, sqlite_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_fixtures import run_dag, task_states, xcom_value

    set_connection(monkeypatch, "lake", sqlite_catalog)
    small_file_table(sqlite_catalog, "sales.orders", files=3)
    config = config_for(tmp_path / "cache")
    dag = build_dags(config)["amoro__catalog_sync"]
    dr = run_dag(dag)
    assert dr.state == "success", task_states(dr)
    assert xcom_value(dr, "sync__lake")["selected"] == 1
    assert list(read_cache(config.cache_dir, "lake").tables) == ["sales.orders"]
    assert "amoro__lake__sales__orders" in build_dags(config)


def test_sync_without_evaluation_caches_a_metadata_estimate(
    sqlite_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, "lake", sqlite_catalog)
    small_file_table(sqlite_catalog, "sales.orders", files=6)
    config = config_for(tmp_path / "cache", evaluate=False)
    sync_catalog(config, "lake")
    cached = read_cache(config.cache_dir, "lake").tables["sales.orders"]
    assert cached.pending is None and cached.health is None
    assert cached.cost == estimate_cost(cached.summary, cached.properties) > 0


def test_a_broken_table_is_cached_with_its_error_and_the_sync_goes_on(
    sqlite_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, "lake", sqlite_catalog)
    small_file_table(sqlite_catalog, "sales.orders", files=2)
    broken = small_file_table(sqlite_catalog, "sales.broken", files=2)
    with broken.transaction() as tx:
        tx.set_properties({"self-optimizing.group": "nowhere"})  # not a configured group
    config = config_for(tmp_path / "cache")
    metrics = sync_catalog(config, "lake")
    assert metrics["failed"] == 1
    cache = read_cache(config.cache_dir, "lake")
    assert cache.tables["sales.orders"].error is None
    assert "nowhere" in (cache.tables["sales.broken"].error or "")
    # the property that causes it is kept, so the parse skips that table with the same message
    # (a placeholder DAG) while the other one is built as usual
    assert cache.tables["sales.broken"].properties["self-optimizing.group"] == "nowhere"
    dags = build_dags(config)
    assert list(dags["amoro__lake__sales__broken"].task_dict) == ["configuration_error"]
    assert "evaluate" in dags["amoro__lake__sales__orders"].task_dict


def test_sync_is_incremental_parallel_and_bounded_in_time(
    sqlite_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, "lake", sqlite_catalog)
    for i in range(6):
        small_file_table(sqlite_catalog, f"sales.t{i}", files=2)
    config = config_for(tmp_path / "cache")
    first = sync_catalog(config, "lake")
    assert (first["evaluated"], first["reused"], first["left_for_next_sync"]) == (6, 0, 0)
    cache = read_cache(config.cache_dir, "lake")
    assert all(t.metadata_location and t.uuid for t in cache.tables.values())
    # nothing changed: nothing is evaluated again
    second = sync_catalog(config, "lake")
    assert (second["evaluated"], second["reused"]) == (0, 6)
    assert read_cache(config.cache_dir, "lake").tables == cache.tables
    # one commit: only that table is evaluated again
    t3 = sqlite_catalog.load_table("sales.t3")
    t3.append(t3.scan(limit=1).to_arrow())
    third = sync_catalog(config, "lake")
    assert (third["evaluated"], third["reused"]) == (1, 5)
    after = read_cache(config.cache_dir, "lake").tables["sales.t3"]
    assert after.metadata_location != cache.tables["sales.t3"].metadata_location
    assert after.summary["total-data-files"] == "3"
    # a time budget that runs out: the tables not reached keep their entries for the next sync
    tight = loads(
        textwrap.dedent(
            f"""
            cache_dir: {tmp_path / "cache"}
            catalogs:
              lake:
                include: ["sales.*"]
            optimizer_groups:
              default: {{slots: 2}}
            catalog_sync: {{parallelism: 1, time_budget: 0.001s}}
            """
        )
    )
    for i in range(6):
        t = sqlite_catalog.load_table(f"sales.t{i}")
        with t.transaction() as tx:
            tx.set_properties({"self-optimizing.quota": "0.25"})
    bounded = sync_catalog(tight, "lake")
    assert bounded["left_for_next_sync"] >= 3 and bounded["evaluated"] <= 3
    kept = read_cache(tight.cache_dir, "lake").tables
    assert sorted(kept) == [f"sales.t{i}" for i in range(6)]  # none lost
    stale = [i for i, t in kept.items() if "self-optimizing.quota" not in t.properties]
    assert len(stale) == bounded["left_for_next_sync"]


def test_cache_is_atomic_and_a_corrupt_cache_reads_as_empty(tmp_path: Path) -> None:
    write_cache(tmp_path, "lake", {"a.b": CachedTable("a.b", cost=5)})
    assert [p.name for p in tmp_path.iterdir()] == ["catalog__lake.json"]  # no temporary left
    assert read_cache(tmp_path, "lake").tables["a.b"].cost == 5
    Path(cache_file(tmp_path, "lake")).write_text("{not json")
    assert read_cache(tmp_path, "lake").tables == {}
    Path(cache_file(tmp_path, "lake")).write_text(json.dumps({"version": 99, "tables": {"a.b": {}}}))
    assert read_cache(tmp_path, "lake").tables == {}
    assert read_cache(tmp_path / "missing", "lake").synced_at is None


def test_table_list_at_a_url_is_read_and_written_through_fsspec(tmp_path: Path) -> None:
    """The table list may live on object storage (any fsspec URL), shared by every host."""
    from airflow_provider_amoro.dag_factory import loads as load_text

    url = f"memory://amoro-test-{tmp_path.name}/tables"
    written = write_cache(url, "lake", {"sales.orders": CachedTable("sales.orders", cost=7)})
    assert written == f"{url}/catalog__lake.json"
    assert read_cache(url, "lake").tables["sales.orders"].cost == 7
    assert read_cache(url + "/nothing-here", "lake").tables == {}
    config = load_text(
        f"""
cache_dir: {url}
optimizer_groups:
  default: {{slots: 2}}
catalogs:
  lake:
    include: ["sales.*"]
"""
    )
    assert config.cache_dir == url
    assert "amoro__lake__sales__orders" in build_dags(config)


def test_an_include_that_matches_nothing_is_reported(
    sqlite_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, "lake", sqlite_catalog)
    small_file_table(sqlite_catalog, "sales.orders", files=1)
    config = config_for(tmp_path / "cache", evaluate=False)  # includes sales.* and ops.events
    metrics = sync_catalog(config, "lake")
    assert metrics["unmatched_includes"] == ["ops.events"]  # the sync task's result; also logged


def test_an_empty_catalog_name_says_which_names_hold_tables(
    sqlite_catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection's catalog name holds nothing, another name does: the sync log names it."""
    small_file_table(sqlite_catalog, "sales.orders", files=1)
    conn = {
        "conn_type": "amoro",
        "extra": {
            "catalog_type": "sql",
            "uri": sqlite_catalog.properties["uri"],
            "warehouse": sqlite_catalog.properties["warehouse"],
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_LAKE", json.dumps(conn))  # no catalog_name: scoped to 'lake'
    metrics = sync_catalog(config_for(tmp_path / "cache", evaluate=False), "lake")
    assert metrics["listed"] == 0 and metrics["unmatched_includes"] == ["sales.*", "ops.events"]
    assert f"'{sqlite_catalog.name}' do; set 'catalog_name' on connection 'lake'" in metrics["hint"]
