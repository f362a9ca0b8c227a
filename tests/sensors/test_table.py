"""TableChangeSensor / OptimizingNeededSensor in poke and deferrable modes, run by ``dag.test()``.

Commits are made by a background thread while the sensor waits: it starts committing once the
sensor task instance is visibly waiting (its baseline stored, or its state ``deferred``).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

from airflow.sdk import DAG
from airflow_fixtures import append_rows, compact_all, run_dag, small_file_table, task_states, xcom_value

from airflow_provider_amoro.sensors.table import BASELINE_KEY, OptimizingNeededSensor, TableChangeSensor
from airflow_provider_amoro.triggers.table_change import branch_head

START = dt.datetime(2024, 1, 1)


def _ti_waiting(dag_id: str, task_id: str, *, deferred: bool) -> bool:
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        if deferred:
            # dag.test() runs the trigger inline with the task instance back in ``queued``; the
            # trigger it deferred to stays referenced by the task instance.
            rows = session.execute(
                select(TaskInstance.state, TaskInstance.trigger_id).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id
                )
            ).all()
            return any(
                r.trigger_id is not None or str(getattr(r.state, "value", r.state)) == "deferred"
                for r in rows
            )
        keys = session.scalars(
            select(TaskStateStoreModel.key).where(
                TaskStateStoreModel.dag_id == dag_id, TaskStateStoreModel.task_id == task_id
            )
        ).all()
        return BASELINE_KEY in keys


def _commit_when(
    ready: Callable[[], bool], actions: list[Callable[[], Any]], out: list[Any], timeout: float = 120
) -> threading.Thread:
    def run() -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                break  # commit anyway: the test then fails on its assertions instead of hanging
            time.sleep(0.1)
        for action in actions:
            out.append(action())
            time.sleep(0.8)  # several polls see each commit on its own

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_table_change_sensor_poke_mode_and_last_seen(airflow_db: Any, amoro_conn: Any) -> None:
    table = small_file_table(amoro_conn, "db.sensed", files=2)
    head = branch_head(table)
    with DAG(
        "test_change_sensor_poke", schedule=None, start_date=START, catchup=False, params={"after": ""}
    ) as dag:
        TableChangeSensor(
            task_id="wait",
            table="db.sensed",
            after_snapshot_id="{{ params.after }}",
            deferrable=False,
            mode="poke",
            poll_interval=0.1,
            timeout=120,
        )
    done: list[Any] = []
    thread = _commit_when(
        lambda: _ti_waiting("test_change_sensor_poke", "wait", deferred=False),
        [lambda: compact_all(table), lambda: append_rows(table, [500])],
        done,
    )
    dr = run_dag(dag, run_conf={"after": str(head)})
    thread.join(30)
    assert dr.state == "success", task_states(dr)
    optimize_id, append_id = done
    out = xcom_value(dr, "wait")
    # The OPTIMIZE snapshot came first and was ignored; the append woke the sensor.
    assert out["snapshot_id"] == append_id and out["previous_snapshot_id"] == head
    assert [s["snapshot_id"] for s in out["snapshots"]] == [append_id]
    assert optimize_id != append_id

    # Next run, no explicit baseline: it starts from the snapshot the sensor saw last time, so a
    # commit made between the runs is not missed (it fires at once).
    between = append_rows(table, [501])
    dr2 = run_dag(dag, run_conf={"after": ""})
    assert dr2.state == "success", task_states(dr2)
    out2 = xcom_value(dr2, "wait")
    assert out2["snapshot_id"] == between and out2["previous_snapshot_id"] == append_id


def test_table_change_sensor_deferrable(airflow_db: Any, amoro_conn: Any) -> None:
    table = small_file_table(amoro_conn, "db.deferred", files=1)
    with DAG("test_change_sensor_defer", schedule=None, start_date=START, catchup=False) as dag:
        TableChangeSensor(task_id="wait", table="db.deferred", poll_interval=0.1, remember=False)
    done: list[Any] = []
    thread = _commit_when(
        lambda: _ti_waiting("test_change_sensor_defer", "wait", deferred=True),
        [lambda: compact_all(table), lambda: append_rows(table, [9, 10])],
        done,
    )
    dr = run_dag(dag)
    thread.join(30)
    assert dr.state == "success", task_states(dr)
    out = xcom_value(dr, "wait")
    assert out["snapshot_id"] == done[1]
    assert [s["operation"] for s in out["snapshots"]] == ["append"]


def test_optimizing_needed_sensor(airflow_db: Any, amoro_conn: Any) -> None:
    busy = small_file_table(amoro_conn, "db.busy", files=4)
    calm = small_file_table(amoro_conn, "db.calm", files=1)
    assert busy is not None
    with DAG("test_needed_sensor", schedule=None, start_date=START, catchup=False) as dag:
        OptimizingNeededSensor(task_id="poke_busy", table="db.busy", deferrable=False, poll_interval=0.1)
        OptimizingNeededSensor(task_id="defer_calm", table="db.calm", poll_interval=0.1)
    done: list[Any] = []
    thread = _commit_when(
        lambda: _ti_waiting("test_needed_sensor", "defer_calm", deferred=True),
        [lambda: [append_rows(calm, [1000 + i]) for i in range(3)]],
        done,
    )
    dr = run_dag(dag)
    thread.join(30)
    assert dr.state == "success", task_states(dr)
    assert xcom_value(dr, "poke_busy")["kind"] == "minor"
    calm_eval = xcom_value(dr, "defer_calm")
    # Two small files that were never optimized already make a minor (the interval has passed).
    assert calm_eval["kind"] == "minor" and calm_eval["data_files"] >= 2
    assert len(done[0]) == 3


def test_table_change_sensor_reschedule_mode_keeps_its_baseline(airflow_db: Any, amoro_conn: Any) -> None:
    """Each reschedule is a new execution; the baseline taken at the first poke must survive them."""
    table = small_file_table(amoro_conn, "db.resched", files=1)
    head = branch_head(table)
    with DAG("test_change_sensor_resched", schedule=None, start_date=START, catchup=False) as dag:
        TableChangeSensor(
            task_id="wait",
            table="db.resched",
            deferrable=False,
            mode="reschedule",
            poll_interval=1,
            remember=False,
            timeout=120,
        )
    done: list[Any] = []
    thread = _commit_when(
        lambda: _ti_waiting("test_change_sensor_resched", "wait", deferred=False),
        [lambda: append_rows(table, [42])],
        done,
    )
    dr = run_dag(dag)
    thread.join(30)
    assert dr.state == "success", task_states(dr)
    out = xcom_value(dr, "wait")
    assert out["snapshot_id"] == done[0] and out["previous_snapshot_id"] == head
    assert _reschedules("test_change_sensor_resched", dr.run_id) >= 1


def _reschedules(dag_id: str, run_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(TaskReschedule)
                .join(TaskInstance, TaskInstance.id == TaskReschedule.ti_id)
                .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
            )
            or 0
        )
