"""LocalExecutor: an execute task is SIGKILLed after writing its outputs, before it could report them.

A real deployment (scheduler, DAG processor, API server; PostgreSQL metadata DB) runs the generated
DAG of a partitioned small-file table. The first try of ``execute[0]`` writes its output files,
then hangs; the test kills its process with SIGKILL. Airflow retries the task, the run commits, and
the killed try's files stay behind, referenced by nothing. One more run of the DAG (its first task,
``resolve``, tears the last process down) leaves no file in the table's data folder that no
snapshot references. Every referenced file exists and the rows are those of before (independent
reader).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from file_checks import missing_referenced_files, unreferenced_data_files
from pyiceberg.catalog.sql import SqlCatalog

from airflow_provider_amoro.testing.reader import canonical_rows, read_table

from .cluster import AirflowCluster, connection_env, kill_tree
from .conftest import CONN_ID, factory_yaml
from .tables import optimize_snapshots, partitioned_small_file_table

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TABLE = "demo.sigkill"
DAG_ID = f"amoro__{CONN_ID}__demo__sigkill"

DAG_FILE = '''
"""Generated DAGs whose first try of execute[0] hangs after writing its outputs (test only)."""
import os
import time
from pathlib import Path

from airflow_provider_amoro.dag_factory import config_path, load_config
from airflow_provider_amoro.dag_factory.builder import _Operators, build_dags
from airflow_provider_amoro.operators.optimizing import ExecuteOptimizingTaskOperator


class HangsAfterWriting(ExecuteOptimizingTaskOperator):
    def execute(self, context):
        result = super().execute(context)
        ti = context["ti"]
        marker = Path(os.environ["AMORO_IT_HANG_MARKER"])
        if ti.try_number == 1 and ti.map_index == 0 and not marker.exists():
            marker.write_text(str(os.getpid()))
            time.sleep(600)  # killed here: the outputs are written, never reported
        return result


ops = _Operators()
ops["execute"] = HangsAfterWriting
globals().update(build_dags(load_config(config_path(None)), operators=ops))
'''


@pytest.fixture(scope="module")
def kill_cluster(
    pg_catalog: SqlCatalog, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowCluster]:
    partitioned_small_file_table(pg_catalog, TABLE)
    home = tmp_path_factory.mktemp("sigkill")
    config = factory_yaml(home / "amoro.yaml", tables=[TABLE], slots=2, cache_dir=home / "cache")
    dag_file = home / "amoro_hang_dags.py"
    dag_file.write_text(DAG_FILE)
    cluster = AirflowCluster(
        home / "home",
        executor="LocalExecutor",
        dag_files=[dag_file],
        extra_env={
            "AMORO_DAGS_CONFIG": str(config),
            "AMORO_IT_HANG_MARKER": str(home / "hang.pid"),
            **connection_env(CONN_ID, pg_catalog),
        },
    )
    try:
        cluster.apply_pools(config)
        cluster.start()
        cluster.wait_for_dags([DAG_ID])
        assert cluster.import_errors() == []
        yield cluster
    finally:
        cluster.stop()


def test_sigkill_mid_execute_then_one_more_run_leaves_no_unreferenced_file(
    kill_cluster: AirflowCluster, pg_catalog: SqlCatalog
) -> None:
    started = time.monotonic()
    table = pg_catalog.load_table(TABLE)
    expected = canonical_rows(read_table(table))
    assert unreferenced_data_files(table) == []
    marker = Path(kill_cluster.env["AMORO_IT_HANG_MARKER"])

    run_id = kill_cluster.trigger(DAG_ID)
    kill_cluster.wait(marker.exists, timeout=180, what="execute[0] to write its outputs and hang")
    pid = int(marker.read_text())
    killed = kill_tree(pid)
    print(f"\nSIGKILL execute[0] (pid {pid}, {len(killed)} processes) after it wrote its outputs")

    state = kill_cluster.wait_for_run(DAG_ID, run_id, timeout=300)
    tis = kill_cluster.task_instances(DAG_ID, run_id)
    assert state == "success", (tis, kill_cluster.logs())
    retried = next(t for t in tis if t["task_id"] == "execute" and t["map_index"] == 0)
    assert retried["try_number"] >= 2, retried
    table = pg_catalog.load_table(TABLE)
    assert len(optimize_snapshots(table)) == 1
    leftovers = unreferenced_data_files(table)
    assert leftovers, "the killed try's outputs are left behind until the next run"
    assert all(os.path.basename(p).startswith("amoro-") for p in leftovers), leftovers

    second = kill_cluster.trigger(DAG_ID)
    assert kill_cluster.wait_for_run(DAG_ID, second, timeout=240) == "success", kill_cluster.logs()

    table = pg_catalog.load_table(TABLE)
    assert unreferenced_data_files(table) == []
    assert missing_referenced_files(table) == []
    assert canonical_rows(read_table(table)) == expected
    assert len(optimize_snapshots(table)) == 1
    print(f"sigkill test: {len(leftovers)} leftover files removed, {time.monotonic() - started:.0f} s")
