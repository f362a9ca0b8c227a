"""A real deployment (LocalExecutor, PostgreSQL metadata DB, triggerer) runs generated DAGs.

Both DAGs are triggered together; their execute tasks share one pool of 2 slots, each table capped
at 1 task at a time (quota 0.5 of 2 slots). Proved from the metadata DB: the two tables' execute
tasks ran at the same time, never more than the pool's 2 at once, never more than 1 per table;
both tables end optimized with exactly the rows they had (independent reader).

A third table is watched: a writer's commit starts its DAG through the AssetWatcher; the
optimizer's own commit does not start it again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

from airflow_provider_amoro.assets import table_change_asset_uri
from airflow_provider_amoro.dag_factory.cache import CachedTable, write_cache
from airflow_provider_amoro.testing.reader import content_hash, read_table
from airflow_provider_amoro.triggers.table_change import WATCHER_STATE_KEY

from .cluster import REPO, AirflowCluster, connection_env
from .conftest import CONN_ID, factory_yaml
from .tables import optimize_snapshots, partitioned_small_file_table

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TABLES = ["demo.alpha", "demo.beta"]
WATCHED = "demo.watched"
HOT, COLD = "demo.hot", "demo.cold"  # one-slot group "prio"; HOT has a higher priority_weight in the YAML
MIB = 1024 * 1024
COLD_TASKS = 12
POOL = "amoro_optimizer_default"


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at one instant."""
    events = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1])
    )
    best = cur = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


@pytest.fixture(scope="module")
def local_cluster(
    pg_catalog: SqlCatalog, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowCluster]:
    """Scheduler, DAG processor, API server and triggerer (LocalExecutor) managing three tables."""
    for ident in (*TABLES, WATCHED, HOT):
        partitioned_small_file_table(pg_catalog, ident)
    partitioned_small_file_table(pg_catalog, COLD, partitions=COLD_TASKS)
    for ident in (HOT, COLD):
        with pg_catalog.load_table(ident).transaction() as tx:
            tx.set_properties({"self-optimizing.group": "prio", "self-optimizing.quota": "1"})
    home = tmp_path_factory.mktemp("local")
    # what the catalog sync would have cached: the group property (and costs, which the DAGs ignore)
    write_cache(
        home / "cache",
        CONN_ID,
        {
            HOT: CachedTable(HOT, properties={"self-optimizing.group": "prio"}, cost=2 * MIB),
            COLD: CachedTable(COLD, properties={"self-optimizing.group": "prio"}, cost=900 * MIB),
        },
    )
    config = factory_yaml(
        home / "amoro.yaml",
        tables=[*TABLES, WATCHED, HOT, COLD],
        slots=2,
        cache_dir=home / "cache",
        watched=(WATCHED,),
        groups={"prio": 1},
        priorities={HOT: 900},
    )
    cluster = AirflowCluster(
        home / "home",
        executor="LocalExecutor",
        dag_files=[REPO / "dags" / "amoro_dags.py"],
        extra_env={"AMORO_DAGS_CONFIG": str(config), **connection_env(CONN_ID, pg_catalog)},
        triggerer=True,
    )
    try:
        print(cluster.apply_pools(config))
        assert cluster.pools()[POOL] == 2
        cluster.start()
        cluster.wait_for_dags(["amoro__catalog_sync", *(dag_id(t) for t in (*TABLES, WATCHED, HOT, COLD))])
        assert cluster.import_errors() == []
        yield cluster
    finally:
        cluster.stop()


def dag_id(ident: str) -> str:
    return f"amoro__{CONN_ID}__demo__{ident.split('.')[1]}"


def test_scheduler_runs_two_tables_in_parallel_within_one_pool(
    local_cluster: AirflowCluster, pg_catalog: SqlCatalog
) -> None:
    started = time.monotonic()
    cluster = local_cluster
    before = {}
    for ident in TABLES:
        rows = read_table(pg_catalog.load_table(ident))
        before[ident] = (content_hash(rows), rows.num_rows)
    dag_ids = [dag_id(t) for t in TABLES]
    runs = {did: cluster.trigger(did) for did in dag_ids}
    for did, run_id in runs.items():
        state = cluster.wait_for_run(did, run_id, timeout=240)
        tis = cluster.task_instances(did, run_id)
        assert state == "success", (tis, cluster.logs())

    executes: dict[str, list[dict[str, Any]]] = {}
    for did, run_id in runs.items():
        tis = cluster.task_instances(did, run_id)
        states = {(t["task_id"], t["map_index"]): t["state"] for t in tis}
        assert states[("commit", -1)] == "success"
        executes[did] = [t for t in tis if t["task_id"] == "execute"]
        assert len(executes[did]) == 6 and all(t["state"] == "success" for t in executes[did])
        assert {t["pool"] for t in executes[did]} == {POOL}
        # quota 0.5 of 2 slots: never two execute tasks of one table at once
        assert max_overlap([(t["start_date"], t["end_date"]) for t in executes[did]]) == 1
    a, b = (executes[d] for d in dag_ids)
    everything = [(t["start_date"], t["end_date"]) for t in a + b]
    # both tables at the same time, and never more than the pool's slots
    assert max_overlap(everything) == 2
    overlapping = [
        (x, y) for x in a for y in b if x["start_date"] < y["end_date"] and y["start_date"] < x["end_date"]
    ]
    assert overlapping, "the two tables' execute tasks never ran at the same time"

    for ident in TABLES:
        table = pg_catalog.load_table(ident)
        after = read_table(table)
        assert (content_hash(after), after.num_rows) == before[ident]
        assert len(optimize_snapshots(table)) == 1
        assert len(table.inspect.files()) == 6  # one file per partition
    print(f"\nLocalExecutor, two tables in one pool: {time.monotonic() - started:.0f} s")


def append_partition_rows(table: Table, first_id: int) -> None:
    """An external writer's commit: one small file in each of the 6 partitions."""
    import pyarrow as pa

    ids = list(range(first_id, first_id + 60))
    schema = pa.schema([("id", pa.int64()), ("p", pa.int64()), ("v", pa.string())])
    table.append(
        pa.table({"id": ids, "p": [i % 6 for i in ids], "v": [f"new-{i}" for i in ids]}, schema=schema)
    )


def test_external_commits_trigger_the_dag_and_its_own_commits_do_not(
    local_cluster: AirflowCluster, pg_catalog: SqlCatalog
) -> None:
    """The AssetWatcher (TableChangeTrigger in the triggerer) runs the DAG on a writer's commit;
    the optimizer's REPLACE commit that run makes does not schedule another run."""
    started = time.monotonic()
    cluster = local_cluster
    did = dag_id(WATCHED)
    feed = table_change_asset_uri(CONN_ID, WATCHED)
    table = pg_catalog.load_table(WATCHED)
    head = table.current_snapshot().snapshot_id
    # the watcher is armed once it has stored the table's head as its baseline
    cluster.wait(
        lambda: cluster.asset_state(feed, WATCHER_STATE_KEY) == head,
        timeout=180,
        what="the table watcher to start in the triggerer",
        interval=1,
    )
    assert cluster.dag_runs(did) == []

    for round_no in (1, 2):
        append_partition_rows(pg_catalog.load_table(WATCHED), 10_000 * round_no)
        before = read_table(pg_catalog.load_table(WATCHED))
        runs = cluster.wait(
            lambda n=round_no: len(cluster.dag_runs(did)) >= n and cluster.dag_runs(did),
            timeout=120,
            what=f"an asset-triggered run after external commit {round_no}",
        )
        run = runs[round_no - 1]
        assert run["run_type"] == "asset_triggered"
        assert cluster.wait_for_run(did, run["run_id"], timeout=240) == "success", cluster.logs()
        table = pg_catalog.load_table(WATCHED)
        assert len(optimize_snapshots(table)) == round_no  # this run committed its optimization
        after = read_table(table)
        assert (content_hash(after), after.num_rows) == (content_hash(before), before.num_rows)
        # the optimizer's commit is seen by the watcher (baseline moves past it) but fires nothing
        optimized_head = table.current_snapshot().snapshot_id
        cluster.wait(
            lambda h=optimized_head: cluster.asset_state(feed, WATCHER_STATE_KEY) == h,
            timeout=60,
            what="the watcher to see the optimizer's snapshot",
            interval=1,
        )
        time.sleep(6)  # three more polls
        assert len(cluster.dag_runs(did)) == round_no, cluster.dag_runs(did)
        assert cluster.asset_event_count(feed) == round_no
    print(f"\nwatcher test: {time.monotonic() - started:.0f} s")


def test_the_higher_priority_table_goes_first_when_the_pool_is_full(
    local_cluster: AirflowCluster, pg_catalog: SqlCatalog
) -> None:
    """A one-slot group: the low-priority table starts first, then the one with the higher
    ``priority_weight`` (YAML) overtakes its waiting tasks. The cached cost plays no part (it would
    change the DAG at every sync): it is even the other way round here."""
    started = time.monotonic()
    cluster = local_cluster
    assert cluster.pools()["amoro_optimizer_prio"] == 1
    runs = {COLD: cluster.trigger(dag_id(COLD))}

    def cold_executing() -> bool:
        return any(
            t["task_id"] == "execute" and t["state"] in ("running", "success")
            for t in cluster.task_instances(dag_id(COLD), runs[COLD])
        )

    # the cheap table's 12 execute tasks are mapped and waiting for the single slot ...
    cluster.wait(cold_executing, timeout=180, what="the cheap table's first execute task")
    runs[HOT] = cluster.trigger(dag_id(HOT))  # ... when the costly table arrives
    for ident, run_id in runs.items():
        assert cluster.wait_for_run(dag_id(ident), run_id, timeout=300) == "success", cluster.logs()
    starts = []
    for ident, run_id in runs.items():
        for ti in cluster.task_instances(dag_id(ident), run_id):
            if ti["task_id"] == "execute":
                assert ti["pool"] == "amoro_optimizer_prio"
                starts.append((ti["start_date"], ident))
    starts.sort()
    order = [ident for _, ident in starts]
    assert sorted(order) == sorted([HOT] * 6 + [COLD] * COLD_TASKS)
    first_hot = order.index(HOT)
    last_hot = len(order) - 1 - order[::-1].index(HOT)
    # from the first costly task on, every slot went to the costly table ...
    assert COLD not in order[first_hot : last_hot + 1], order
    # ... although cheap tasks were waiting since before (they ran only afterwards)
    assert COLD in order[last_hot + 1 :], order
    for ident in (HOT, COLD):
        assert len(optimize_snapshots(pg_catalog.load_table(ident))) == 1
    print(f"\npriority test: {time.monotonic() - started:.0f} s, start order {order}")
