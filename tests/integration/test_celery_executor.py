"""CeleryExecutor: Redis broker, PostgreSQL result backend and metadata DB, two real Celery workers.

1. The mapped execute tasks of one table spread over both workers (quota 2 threads, each worker
   runs one task at a time).
2. A worker is killed with SIGKILL while it runs an execute task: Airflow notices the lost task
   (heartbeat timeout), retries it on the other worker, and the run ends with the table optimized
   exactly once (one OPTIMIZE snapshot) and every row intact (independent reader).

Both tests share one cluster (module scope); the kill test runs second because it ends a worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from airflow_provider_amoro.testing.reader import content_hash, read_table

from .cluster import REPO, AirflowCluster, connection_env
from .conftest import CONN_ID, factory_yaml
from .tables import optimize_snapshots, partitioned_small_file_table

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SPREAD = "demo.spread"
WORKERS = ("worker-1", "worker-2")
KILLED = "demo.killed"


def dag_id(ident: str) -> str:
    return f"amoro__{CONN_ID}__demo__{ident.split('.')[1]}"


@pytest.fixture(scope="module")
def celery_cluster(
    pg_catalog: SqlCatalog, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowCluster]:
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no Redis here"
        import os

        if os.environ.get("CI"):
            pytest.fail(f"Redis is required when CI is set: {exc}")
        pytest.skip(f"Redis not reachable at 127.0.0.1:6379: {exc}")
    for ident in (SPREAD, KILLED):
        partitioned_small_file_table(pg_catalog, ident, quota="2")
    home = tmp_path_factory.mktemp("celery")
    config = factory_yaml(home / "amoro.yaml", tables=[SPREAD, KILLED], slots=2, cache_dir=home / "cache")
    cluster = AirflowCluster(
        home / "home",
        executor="CeleryExecutor",
        dag_files=[REPO / "dags" / "amoro_dags.py"],
        extra_env={"AMORO_DAGS_CONFIG": str(config), **connection_env(CONN_ID, pg_catalog)},
        celery_workers=2,
        worker_concurrency=1,
    )
    try:
        cluster.apply_pools(config)
        cluster.start()
        cluster.wait_for_dags([dag_id(SPREAD), dag_id(KILLED)])
        yield cluster
    finally:
        cluster.stop()


#: Task states that hold (or are about to take) a Celery worker slot.
_SLOT_STATES = ("scheduled", "queued", "running", "restarting", "up_for_retry")


def _others_paused_and_idle(cluster: AirflowCluster, keep: str) -> list[str]:
    """Pause every DAG but ``keep`` and wait until no task holds a worker slot; return those DAGs.

    The generated DAGs are unpaused and scheduled (catalog sync, the other table's change feed):
    a task of theirs running on one worker (each runs one task at a time) while ``keep`` runs
    would leave every task of ``keep`` to the other worker, which is not what the test is about.
    """
    others = [r[0] for r in cluster.query("SELECT dag_id FROM dag WHERE dag_id <> %s", (keep,))]
    for other in others:
        cluster.run_cli("dags", "pause", other)
    states = ", ".join(f"'{s}'" for s in _SLOT_STATES)
    cluster.wait(
        lambda: not cluster.query(f"SELECT 1 FROM task_instance WHERE state IN ({states})"),
        timeout=180,
        what="no task holding a worker slot",
    )
    return others


def test_mapped_execute_tasks_spread_over_both_workers(
    celery_cluster: AirflowCluster, pg_catalog: SqlCatalog
) -> None:
    started = time.monotonic()
    before = read_table(pg_catalog.load_table(SPREAD))
    paused = _others_paused_and_idle(celery_cluster, dag_id(SPREAD))
    try:
        run_id = celery_cluster.trigger(dag_id(SPREAD))
        state = celery_cluster.wait_for_run(dag_id(SPREAD), run_id, timeout=240)
    finally:
        for other in paused:
            celery_cluster.run_cli("dags", "unpause", other)
    tis = celery_cluster.task_instances(dag_id(SPREAD), run_id)
    assert state == "success", (tis, celery_cluster.logs())
    executes = [t for t in tis if t["task_id"] == "execute"]
    assert len(executes) == 6 and all(t["state"] == "success" for t in executes)
    hosts = {t["hostname"] for t in executes}
    assert hosts == set(WORKERS), (
        executes,
        {w: celery_cluster.tail(w, chars=1_000_000).count(" received ") for w in WORKERS},
        celery_cluster.logs(),
    )
    table = pg_catalog.load_table(SPREAD)
    after = read_table(table)
    assert (content_hash(after), after.num_rows) == (content_hash(before), before.num_rows)
    assert len(optimize_snapshots(table)) == 1
    print(f"\nCelery spread: {time.monotonic() - started:.0f} s, hosts {sorted(hosts)}")


def test_worker_killed_mid_task_the_run_still_optimizes_once(
    celery_cluster: AirflowCluster, pg_catalog: SqlCatalog
) -> None:
    started = time.monotonic()
    before = read_table(pg_catalog.load_table(KILLED))
    dag = dag_id(KILLED)
    run_id = celery_cluster.trigger(dag)

    def execute_running() -> dict[str, Any] | None:
        for ti in celery_cluster.task_instances(dag, run_id):
            if ti["task_id"] == "execute" and ti["state"] == "running" and ti["hostname"] in WORKERS:
                return ti
        return None

    victim = celery_cluster.wait(execute_running, timeout=180, what="a running execute task", interval=0.05)
    doomed = victim["hostname"]
    survivor = next(w for w in WORKERS if w != doomed)
    killed = celery_cluster.kill(doomed)
    print(f"\nSIGKILL {doomed} ({len(killed)} processes) while it ran execute[{victim['map_index']}]")

    state = celery_cluster.wait_for_run(dag, run_id, timeout=300)
    tis = celery_cluster.task_instances(dag, run_id)
    assert state == "success", (tis, celery_cluster.logs())
    retried = next(t for t in tis if t["task_id"] == "execute" and t["map_index"] == victim["map_index"])
    assert retried["state"] == "success" and retried["try_number"] >= 2, retried
    assert retried["hostname"] == survivor
    earlier = [
        h for h in celery_cluster.task_tries(dag, run_id, "execute") if h["map_index"] == victim["map_index"]
    ]
    assert any(h["hostname"] == doomed and h["state"] != "success" for h in earlier), earlier

    table = pg_catalog.load_table(KILLED)
    after = read_table(table)
    assert (content_hash(after), after.num_rows) == (content_hash(before), before.num_rows)
    assert len(optimize_snapshots(table)) == 1  # optimized once, not twice, not partially
    assert len(table.inspect.files()) == 6
    print(f"worker kill test: {time.monotonic() - started:.0f} s")
