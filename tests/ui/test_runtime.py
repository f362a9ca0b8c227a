"""The Optimizing and Maintenance tabs from real runtime state written by real DAG runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from airflow_fixtures import run_dag, task_states

from .conftest import create_demo_table

BASE = "/amoro/api/v1/tables/amoro_default"


def test_optimizing_process_of_a_real_run_is_shown(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any
) -> None:
    ops = pytest.importorskip("airflow_provider_amoro.operators.optimizing")
    import pendulum
    from airflow.sdk import DAG

    from airflow_provider_amoro.testing.reader import content_hash, read_table

    ident = "lake.rt_optimized"  # runtime state is session-wide (Airflow DB): one table name per test
    base = f"{BASE}/{ident}"
    table = create_demo_table(amoro_conn, ident)
    before = read_table(table)
    files_before = int(table.current_snapshot().summary["total-data-files"])
    with DAG("ui_test_optimize", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        ops.SelfOptimizingOperator(task_id="optimize", table=ident, amoro_conn_id="amoro_default")
    dr = run_dag(dag)
    assert task_states(dr)[("optimize", -1)] == "success"
    after_table = amoro_conn.load_table(ident)
    after = read_table(after_table)
    assert content_hash(after) == content_hash(before) and after.num_rows == before.num_rows

    body = client.get(f"{base}/optimizing-processes", headers=auth).json()
    assert body["available"] is True
    assert body["status"] == "IDLE"
    (proc,) = [p for p in body["processes"] if p["status"] == "SUCCESS"]
    assert proc["kind"] in ("minor", "major", "full")
    assert proc["input_files"] >= files_before
    assert 0 < proc["output_files"] < proc["input_files"]
    assert proc["committed_snapshot_id"] == after_table.current_snapshot().snapshot_id
    assert proc["base_snapshot_id"] == after_table.current_snapshot().parent_snapshot_id  # planned on
    assert proc["duration_ms"] is not None and proc["input_bytes"] > 0 and proc["output_bytes"] > 0

    tasks = client.get(f"{base}/optimizing-processes/{proc['process_id']}/tasks", headers=auth)
    assert tasks.status_code == 200, tasks.text
    tasks_json = tasks.json()
    assert tasks_json and sum(t["input_files"] for t in tasks_json) == proc["input_files"]
    r = client.get(f"{base}/optimizing-processes/no-such-process/tasks", headers=auth)
    assert r.status_code == 404

    snaps = client.get(f"{base}/snapshots", headers=auth).json()
    assert snaps[0]["operation"] == "replace" and snaps[0]["producer"] == "OPTIMIZE"
    assert 0 < snaps[0]["removed_data_files"] <= proc["input_files"]
    history = client.get(f"{base}/history", headers=auth).json()["points"]
    assert history[-1]["files"] < history[-2]["files"]
    assert history[-1]["avg_file_size"] > history[-2]["avg_file_size"]

    # The list row and the page carry the runtime state: status and last optimized time.
    (row,) = client.get("/amoro/api/v1/tables", headers=auth).json()["tables"]
    assert row["identifier"] == ident and row["status"] == "IDLE"
    assert row["last_optimized"] is not None
    page = client.get(f"/amoro/tables/amoro_default/{ident}?tab=optimizing", headers=auth).text
    assert "ps-success" in page and proc["process_id"].split("/")[-1] in page
    assert f'href="/dags/ui_test_optimize/runs/{quote(dr.run_id, safe="")}"' in page


def test_maintenance_runs_and_failed_process_recorded_by_tasks(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any
) -> None:
    import pendulum
    from airflow.sdk import DAG, Asset, task

    from airflow_provider_amoro.assets import table_asset_uri
    from airflow_provider_amoro.runtime.recorder import TableStateRecorder
    from airflow_provider_amoro.runtime.state import ProcessRecord, TaskRecord

    ident = "lake.rt_maintained"
    base = f"{BASE}/{ident}"
    create_demo_table(amoro_conn, ident, batches=2)
    uri = table_asset_uri("amoro_default", ident)

    with DAG("ui_test_maintenance", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:

        @task(outlets=[Asset(name=uri, uri=uri)])
        def maintain(**context: Any) -> None:
            rec = TableStateRecorder(context, uri, strict=True)
            rec.record_maintenance("expire_snapshots", {"expired_snapshots": 3, "deleted_files": 7})
            rec.record_maintenance("clean_orphan_files", {"error": "permission denied"}, success=False)
            rec.append_history(
                ProcessRecord(
                    process_id="ui_test/run-1",
                    table=ident,
                    conn_id="amoro_default",
                    kind="major",
                    status="FAILED",
                    plan_time_ms=1_700_000_000_000,
                    end_time_ms=1_700_000_090_000,
                    task_count=1,
                    input_files=4,
                    input_bytes=4096,
                    failure="CommitConflictError: file removed concurrently",
                    tasks=[TaskRecord(task_id=0, partition="region=eu", status="FAILED", attempts=3)],
                )
            )

        maintain()

    dr = run_dag(dag)
    assert task_states(dr)[("maintain", -1)] == "success"

    m = client.get(f"{base}/maintenance", headers=auth).json()
    assert m["available"] is True
    runs = {r["action"]: r for r in m["runs"]}
    assert runs["expire_snapshots"]["status"] == "SUCCESS"
    assert runs["expire_snapshots"]["result"] == {"expired_snapshots": 3, "deleted_files": 7}
    assert runs["expire_snapshots"]["last_run"] is not None
    assert runs["clean_orphan_files"]["status"] == "FAILED"
    assert runs["clean_orphan_files"]["enabled"] is True  # the demo table sets clean-orphan-file.enabled
    assert runs["expire_data"]["status"] == "NEVER" and runs["expire_data"]["enabled"] is False

    procs = client.get(f"{base}/optimizing-processes", headers=auth).json()["processes"]
    failed = next(p for p in procs if p["process_id"] == "ui_test/run-1")
    assert failed["status"] == "FAILED" and failed["duration_ms"] == 90_000
    assert "CommitConflictError" in failed["failure"]
    tasks = client.get(f"{base}/optimizing-processes/ui_test/run-1/tasks", headers=auth).json()
    assert tasks == [
        {
            "task_id": "0",
            "partition": "region=eu",
            "status": "FAILED",
            "attempts": 3,
            "input_files": 0,
            "input_bytes": 0,
            "input_records": 0,
            "output_files": 0,
            "output_bytes": 0,
            "output_records": 0,
            "duration_ms": 0,
            "airflow_state": None,
            "failure": None,
        }
    ]
    page = client.get(f"/amoro/tables/amoro_default/{ident}?tab=maintenance", headers=auth).text
    assert "deleted_files" in page and "permission denied" in page and "CommitConflictError" in page
