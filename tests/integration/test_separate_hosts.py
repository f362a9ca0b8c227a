"""Airflow as on separate machines: every component has its own AIRFLOW_HOME and local disk.

CeleryExecutor with two workers, a DAG processor, a scheduler, a triggerer and an API server, each
with its own ``AIRFLOW_HOME`` (logs, config, local files). In common, as between real hosts, only
the DAGs folder (``amoro_dags.py`` and ``amoro.yaml`` beside it) and the table list, which lives on
object storage (an S3 server, ``cache_dir: s3://…``). Airflow's default applies: DAGs are paused at
creation unless they say otherwise.

From the first parse, with nobody unpausing or triggering anything:

1. ``amoro__catalog_sync`` runs on its schedule on a worker and writes the table list to S3;
2. the DAG processor's next parse reads it and creates the table's DAG, unpaused, so its
   AssetWatcher starts in the triggerer;
3. a writer's commit fires the watcher; the run's tasks run on the workers, which re-parse the DAG
   file (they have no table list on their own disk) and optimize the table: one OPTIMIZE commit,
   every row intact (independent reader).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from airflow_provider_amoro.assets import table_change_asset_uri
from airflow_provider_amoro.testing.reader import content_hash, read_table
from airflow_provider_amoro.triggers.table_change import WATCHER_STATE_KEY

from .cluster import REPO, AirflowCluster, connection_env
from .conftest import CONN_ID
from .tables import optimize_snapshots, partitioned_small_file_table

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TABLE = "hosts.events"
DAG_ID = f"amoro__{CONN_ID}__hosts__events"
WORKERS = ("worker-1", "worker-2")


def _redis_or_skip() -> None:
    import os

    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no Redis here"
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required when CI is set: {exc}")
        pytest.skip(f"Redis not reachable at 127.0.0.1:6379: {exc}")


@pytest.fixture(scope="module")
def hosts_cluster(
    pg_catalog: SqlCatalog, s3_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AirflowCluster, str]]:
    from s3_server import ACCESS_KEY, REGION, SECRET_KEY

    _redis_or_skip()
    partitioned_small_file_table(pg_catalog, TABLE, quota="2")
    table_list = f"s3://{s3_server.new_bucket()}/amoro/tables"
    home = tmp_path_factory.mktemp("hosts")
    dags = home / "home" / "dags"
    dags.mkdir(parents=True)
    (dags / "amoro.yaml").write_text(
        f"""
cache_dir: {table_list}
catalogs:
  {CONN_ID}:
    include: ["hosts.*"]
optimizer_groups:
  default: {{slots: 2}}
defaults:
  schedule: off
  watch_changes: true
  change_poll_interval: 2s
  retry_delay: 2s
  maintenance: {{expire_snapshots: 1h, clean_dangling_delete_files: off, clean_orphan_files: off,
                 expire_data: off, create_tags: off}}
catalog_sync:
  schedule: 20s
  evaluate: false
"""
    )
    fsspec_s3 = json.dumps(
        {
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
            "client_kwargs": {"endpoint_url": s3_server.endpoint, "region_name": REGION},
        }
    )
    cluster = AirflowCluster(
        home / "home",
        executor="CeleryExecutor",
        dag_files=[REPO / "dags" / "amoro_dags.py"],
        extra_env={
            **connection_env(CONN_ID, pg_catalog),
            "AMORO_DAGS_CONFIG": str(dags / "amoro.yaml"),  # in the (shared) DAGs folder
            "FSSPEC_S3": fsspec_s3,  # fsspec's own configuration: how every host reaches the table list
            # re-parse soon after the first sync (Airflow's default is 30 s)
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        },
        celery_workers=2,
        worker_concurrency=1,
        triggerer=True,
        separate_homes=True,
    )
    try:
        cluster.apply_pools(dags / "amoro.yaml")
        cluster.start()
        yield cluster, table_list
    finally:
        cluster.stop()


def test_a_table_is_optimized_end_to_end_from_the_first_parse_with_no_manual_step(
    hosts_cluster: tuple[AirflowCluster, str], pg_catalog: SqlCatalog, s3_server: Any
) -> None:
    cluster, table_list = hosts_cluster
    started = time.monotonic()
    # nothing local: every component has its own home, none holds a table list
    homes = sorted(p.name for p in cluster.home.glob("host-*"))
    assert homes == sorted(
        f"host-{n}" for n in ("api-server", "dag-processor", "scheduler", "triggerer", *WORKERS)
    )
    assert not list(cluster.home.glob("host-*/amoro/cache/*.json"))

    # 1. the sync DAG is unpaused at creation and runs on its own schedule
    cluster.wait_for_dags(["amoro__catalog_sync"], timeout=240)
    assert cluster.is_paused("amoro__catalog_sync") is False
    runs = cluster.wait(
        lambda: [r for r in cluster.dag_runs("amoro__catalog_sync") if r["state"] == "success"],
        timeout=300,
        what="a scheduled catalog sync to succeed",
        interval=2,
    )
    assert runs[0]["run_type"] == "scheduled"
    fs = s3_server.s3fs()
    assert fs.exists(f"{table_list.removeprefix('s3://')}/catalog__{CONN_ID}.json")

    # 2. the next parse creates the table's DAG, unpaused: its watcher arms in the triggerer
    cluster.wait_for_dags([DAG_ID], timeout=240)
    assert cluster.is_paused(DAG_ID) is False
    feed = table_change_asset_uri(CONN_ID, TABLE)
    head = pg_catalog.load_table(TABLE).current_snapshot().snapshot_id
    cluster.wait(
        lambda: cluster.asset_state(feed, WATCHER_STATE_KEY) == head,
        timeout=240,
        what="the table watcher to start in the triggerer",
        interval=1,
    )
    assert cluster.import_errors() == []

    # 3. a writer's commit: the watcher fires, the workers optimize
    import pyarrow as pa

    ids = list(range(50_000, 50_060))
    schema = pa.schema([("id", pa.int64()), ("p", pa.int64()), ("v", pa.string())])
    pg_catalog.load_table(TABLE).append(
        pa.table({"id": ids, "p": [i % 6 for i in ids], "v": [f"new-{i}" for i in ids]}, schema=schema)
    )
    before = read_table(pg_catalog.load_table(TABLE))
    run = cluster.wait(
        lambda: next(iter(cluster.dag_runs(DAG_ID)), None),
        timeout=180,
        what="an asset-triggered run of the table DAG",
    )
    assert run["run_type"] == "asset_triggered"
    state = cluster.wait_for_run(DAG_ID, run["run_id"], timeout=400)
    tis = cluster.task_instances(DAG_ID, run["run_id"])
    assert state == "success", (tis, cluster.logs())
    assert {t["hostname"] for t in tis if t["state"] == "success"} <= set(WORKERS)
    executes = [t for t in tis if t["task_id"] == "execute"]
    assert executes and all(t["state"] == "success" for t in executes)
    table = pg_catalog.load_table(TABLE)
    after = read_table(table)
    assert (content_hash(after), after.num_rows) == (content_hash(before), before.num_rows)
    assert len(optimize_snapshots(table)) == 1
    # still no table list on any component's own disk
    assert not list(cluster.home.glob("host-*/amoro/cache/*.json"))
    print(f"\nseparate hosts, first parse to optimized table: {time.monotonic() - started:.0f} s")
