"""The runtime readers: status derived from live task states (never stuck), failures and attempts."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from airflow_fixtures import run_dag, small_file_table, task_states, xcom_value

from airflow_provider_amoro.assets import table_asset
from airflow_provider_amoro.operators.optimizing import (
    CommitOptimizingOperator,
    EvaluateOptimizingOperator,
    ExecuteOptimizingTaskOperator,
    PlanOptimizingOperator,
    SelfOptimizingOperator,
)
from airflow_provider_amoro.runtime import (
    TableStatus,
    get_optimizing_history,
    get_table_runtime,
    list_table_runtimes,
    table_dag_id,
)
from airflow_provider_amoro.runtime.reader import _TI, _status_of_run
from airflow_provider_amoro.runtime.state import KEY_STATUS, StatusHint
from airflow_provider_amoro.testing.deletes import live_data_files
from airflow_provider_amoro.testing.reader import content_hash, read_table

START = dt.datetime(2024, 1, 1)


def _ti(
    task_id: str, stage: str | None, state: str | None, map_index: int = -1, start: int | None = 1
) -> _TI:
    return _TI(task_id, map_index, state, stage, 1, start, None, None)


def test_status_of_run_follows_the_pipeline() -> None:
    def status(*tis: _TI, kind: str | None = "major") -> str | None:
        found = _status_of_run(list(tis), kind, None)
        return None if found is None else found[0].value

    ev_ok = _ti("evaluate", "evaluate", "success")
    assert status(_ti("evaluate", "evaluate", "running"), _ti("plan", "plan", None)) is None
    assert status(ev_ok, _ti("plan", "plan", None, start=None)) == "PLANNING"
    assert status(ev_ok, _ti("plan", "plan", "running")) == "PLANNING"
    plan_ok = _ti("plan", "plan", "success")
    unexpanded = _ti("execute", "execute", None, start=None)
    assert status(ev_ok, plan_ok, unexpanded, _ti("commit", "commit", None)) == "MAJOR_OPTIMIZING"
    running = [_ti("execute", "execute", s, i) for i, s in enumerate(["success", "up_for_retry", "queued"])]
    assert status(ev_ok, plan_ok, *running, kind="full") == "FULL_OPTIMIZING"
    done = [_ti("execute", "execute", "success", i) for i in range(3)]
    assert status(ev_ok, plan_ok, *done, _ti("commit", "commit", None, start=None)) == "COMMITTING"
    assert status(ev_ok, plan_ok, *done, _ti("commit", "commit", "running")) == "COMMITTING"
    assert status(ev_ok, plan_ok, *done, _ti("commit", "commit", "success")) is None
    assert status(_ti("evaluate", "evaluate", "success"), _ti("plan", "plan", "skipped")) is None
    assert status(_ti("opt", "one_task", "running"), kind="minor") == "MINOR_OPTIMIZING"
    assert status(_ti("opt", "one_task", "failed")) is None
    assert status(_ti("python", None, "running")) is None
    hint = StatusHint("COMMITTING", "minor", "d", "r", "opt", -1, 5)
    assert _status_of_run([_ti("opt", "one_task", "running")], "minor", hint) == (TableStatus.COMMITTING, 5)


class _DyingOptimizer(SelfOptimizingOperator):
    """A one-task optimizer whose worker 'dies' after announcing MAJOR_OPTIMIZING."""

    def execute(self, context: Any) -> Any:
        self.state(context).set_status(TableStatus.MAJOR_OPTIMIZING, "major")
        context["ti"].xcom_push(key="seen", value=get_table_runtime("amoro_default", self.table).status)
        raise RuntimeError("worker lost")


def test_a_dead_worker_never_leaves_a_stale_status(airflow_db: Any, amoro_conn: Any) -> None:
    small_file_table(amoro_conn, "db.dead", files=1)
    with DAG("test_dead_worker", schedule=None, start_date=START, catchup=False) as dag:
        _DyingOptimizer(task_id="optimize", table="db.dead")
    dr = run_dag(dag)
    assert dr.state == "failed"
    assert xcom_value(dr, "optimize", key="seen") == "MAJOR_OPTIMIZING"  # trusted while it ran
    stored = _stored(KEY_STATUS, "db.dead")
    assert stored["status"] == "MAJOR_OPTIMIZING"  # the hint the dead task left behind...
    rt = get_table_runtime("amoro_default", "db.dead")
    assert rt.status == "IDLE" and rt.current_process is None  # ...is not trusted once its run ended


def _stored(key: str, table: str) -> Any:
    import json

    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(AssetStateStoreModel.value)
            .join(AssetModel, AssetModel.id == AssetStateStoreModel.asset_id)
            .where(AssetModel.uri == f"iceberg://amoro_default/{table.replace('.', '/')}")
            .where(AssetStateStoreModel.key == key)
        )
    return json.loads(value) if value is not None else None


def _hide_inputs(table_name: str, switch: str) -> list[str]:
    """A storage outage while ``switch`` exists: move the table's data files away (restored later)."""
    from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

    if not os.path.exists(switch):
        return []
    table = AmoroCatalogHook().load_table(table_name)
    moved = []
    for f in live_data_files(table):
        path = f.file_path.removeprefix("file://")
        os.rename(path, path + ".away")
        moved.append(path)
    return moved


def test_failed_execute_tasks_are_retried_then_recorded(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path
) -> None:
    switch = tmp_path / "outage"
    switch.touch()
    table = small_file_table(amoro_conn, "db.outage", files=4)
    before = read_table(table)
    name = "db.outage"
    with DAG(table_dag_id("amoro_default", name), schedule=None, start_date=START, catchup=False) as dag:
        evaluate = EvaluateOptimizingOperator(task_id="evaluate", table=name)
        plan = PlanOptimizingOperator(task_id="plan", table=name)
        outage = PythonOperator(task_id="outage", python_callable=_hide_inputs, op_args=[name, str(switch)])
        execute = ExecuteOptimizingTaskOperator.partial(
            task_id="execute",
            table=name,
            retries=1,
            retry_delay=dt.timedelta(seconds=0),
            inlets=[table_asset("amoro_default", name)],
        ).expand(task=plan.output)
        commit = CommitOptimizingOperator(task_id="commit", table=name)
        evaluate >> plan >> outage >> execute >> commit
    dr = run_dag(dag)
    states = task_states(dr)
    assert dr.state == "failed" and states[("commit", -1)] == "failed", states
    assert all(v == "failed" for (t, _), v in states.items() if t == "execute")
    moved = xcom_value(dr, "outage")
    assert moved
    for path in moved:
        os.rename(path + ".away", path)
    switch.unlink()

    rt = get_table_runtime("amoro_default", name)
    assert rt.status == "PENDING" and rt.current_process is None
    assert rt.dag_id == dag.dag_id and rt.last_optimized_snapshot_id is None
    history = get_optimizing_history("amoro_default", name)
    assert len(history) == 1
    failed = history[0]
    assert failed.status == "FAILED" and "tasks without results" in (failed.failure or "")
    assert failed.tasks and all(t.status == "FAILED" and t.attempts == 2 for t in failed.tasks)

    # Storage is back: the next run of the same DAG optimizes; the history shows both processes.
    dr2 = run_dag(dag)
    assert dr2.state == "success", task_states(dr2)
    table = amoro_conn.load_table(name)
    assert content_hash(read_table(table)) == content_hash(before)
    history = get_optimizing_history("amoro_default", name)
    assert [p.status for p in history] == ["SUCCESS", "FAILED"]
    assert history[0].committed_snapshot_id == table.current_snapshot().snapshot_id
    assert get_table_runtime("amoro_default", name).status == "IDLE"
    listed = {r.table: r for r in list_table_runtimes()}
    assert listed[name].status == "IDLE" and listed[name].last_process is not None
    assert get_table_runtime("amoro_default", "db.never_seen").status == "IDLE"
    assert Path(table.location().removeprefix("file://")).exists()


def _boom() -> None:
    raise RuntimeError("the run dies between plan and execute")


def _read_current(uri: str, **context: Any) -> list[str | None]:
    from airflow_provider_amoro.runtime.recorder import TableStateRecorder

    recorder = TableStateRecorder(context, uri, strict=True)
    live, raw = recorder.current_process(), recorder.current_process(live=False)
    return [live.status if live else None, raw.status if raw else None]


def test_a_dead_run_never_leaves_a_running_process(airflow_db: Any, amoro_conn: Any) -> None:
    from airflow_provider_amoro.assets import table_asset

    small_file_table(amoro_conn, "db.halfway", files=4)
    asset = table_asset("amoro_default", "db.halfway")
    with DAG("test_dead_run", schedule=None, start_date=START, catchup=False) as dying:
        plan = PlanOptimizingOperator(task_id="plan", table="db.halfway")
        plan >> PythonOperator(task_id="boom", python_callable=_boom)
    dr = run_dag(dying)
    assert dr.state == "failed"
    with DAG("test_dead_run_reader", schedule=None, start_date=START, catchup=False) as reader:
        PythonOperator(task_id="read", python_callable=_read_current, op_args=[asset.uri], inlets=[asset])
    dr2 = run_dag(reader)
    assert dr2.state == "success", task_states(dr2)
    # Through the Task SDK: the stored record still says RUNNING, the live view says CLOSED.
    assert xcom_value(dr2, "read") == ["CLOSED", "RUNNING"]
    rt = get_table_runtime("amoro_default", "db.halfway")
    assert rt.status == "PENDING" and rt.current_process is None
    [proc] = get_optimizing_history("amoro_default", "db.halfway")
    assert proc.status == "FAILED" and proc.run_id == dr.run_id and proc.task_count >= 1


def test_status_without_active_run() -> None:
    from airflow_provider_amoro.runtime.reader import status_without_active_run

    pending = {
        "amoro.evaluation": {"kind": "minor", "evaluated_ms": 10},
        "amoro.optimized": {"last_commit_ms": 5},
    }
    assert status_without_active_run(pending) == "PENDING"
    done = {**pending, "amoro.optimized": {"last_commit_ms": 20}}
    assert status_without_active_run(done) == "IDLE"
    failed = {
        **done,
        "amoro.process": {
            "process_id": "d/r",
            "table": "t",
            "conn_id": "c",
            "kind": "major",
            "status": "FAILED",
        }
        | {"task_count": 2, "plan_time_ms": 30},
    }
    assert status_without_active_run(failed) == "PENDING"
    assert status_without_active_run({}) == "IDLE"


def test_history_stays_within_the_state_value_budget() -> None:
    import json

    from airflow_provider_amoro.runtime.recorder import bounded_history
    from airflow_provider_amoro.runtime.state import (
        HISTORY_LIMIT,
        HISTORY_WITH_TASKS,
        STATE_VALUE_BUDGET,
        ProcessRecord,
        TaskRecord,
    )

    def proc(i: int, tasks: int) -> dict[str, Any]:
        p = ProcessRecord(f"d/run{i}", "db.t", "c", "minor", "SUCCESS", plan_time_ms=i)
        p.tasks = [TaskRecord(task_id=k, partition=f"p={k}", input_files=3) for k in range(tasks)]
        p.summary = {"partitions": [{"path": f"p={k}", "cost": k, "reasons": ["x" * 80]} for k in range(20)]}
        return p.to_dict()

    history = bounded_history([proc(i, 100) for i in range(80)])
    assert len(history) == HISTORY_LIMIT and history[0]["process_id"] == "d/run0"
    assert "partitions" in history[0]["summary"] and "partitions" not in history[-1]["summary"]
    assert len(json.dumps(history)) <= STATE_VALUE_BUDGET
    assert history[0]["tasks"]  # the newest keeps its tasks; older ones give theirs up first
    assert not any(h["tasks"] for h in history[HISTORY_WITH_TASKS:])
    small = bounded_history([proc(i, 5) for i in range(10)])
    assert len(small) == 10 and [bool(h["tasks"]) for h in small].count(True) == HISTORY_WITH_TASKS
    assert len(bounded_history([proc(0, 5000)])) == 1  # the newest process is always kept
