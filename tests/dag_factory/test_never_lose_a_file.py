"""Data safety through the generated DAG (``dag.test()``): repeated commits, unknown commit outcomes.

Each test ends with the same proof: the table reads row-identical with the independent reader,
and every file a retained snapshot references exists.
"""

from __future__ import annotations

import contextlib
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import run_dag, small_file_table, task_states, xcom_value
from file_checks import missing_referenced_files, unreferenced_data_files
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitStateUnknownException
from pyiceberg.table import Table

from airflow_provider_amoro.dag_factory import build_dags, loads
from airflow_provider_amoro.maintenance.expire import expire_snapshots
from airflow_provider_amoro.optimizing.cleanup import PROCESS_ID_KEY
from airflow_provider_amoro.runtime.reader import get_table_runtime
from airflow_provider_amoro.runtime.state import ProcessStatus, table_dag_id
from airflow_provider_amoro.testing.reader import canonical_rows, read_table


def rerun_task(dag: Any, dag_run: Any, task_id: str) -> str:
    """Clear one task instance of a finished run and run it again in place (as ``airflow tasks clear``).

    The run's other task instances and their XComs stay as they are; returns the new state.
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(
            select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == dag_run.run_id)
        )
        run.state = DagRunState.RUNNING
        ti = session.scalar(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag.dag_id,
                TaskInstance.run_id == dag_run.run_id,
                TaskInstance.task_id == task_id,
            )
        )
        ti.try_number += 1
        ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        with contextlib.suppress(Exception):  # the state tells
            _run_task(ti=ti, task=dag.task_dict[task_id])
        session.expire_all()
        ti = session.scalar(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag.dag_id,
                TaskInstance.run_id == dag_run.run_id,
                TaskInstance.task_id == task_id,
            )
        )
        state = str(getattr(ti.state, "value", ti.state))
        run = session.scalar(
            select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == dag_run.run_id)
        )
        run.state = DagRunState.SUCCESS if state == "success" else DagRunState.FAILED
        session.commit()
    return state


def _dag(tmp_path: Path, identifier: str) -> Any:
    yaml = textwrap.dedent(
        f"""
        cache_dir: {tmp_path / "cache"}
        catalogs:
          amoro_default:
            include: ["{identifier}"]
        optimizer_groups:
          default: {{slots: 2}}
        defaults:
          schedule: off
          watch_changes: false
          task_retries: 0
          maintenance: {{expire_snapshots: off, clean_dangling_delete_files: off}}
        """
    )
    return build_dags(loads(yaml))[table_dag_id("amoro_default", identifier)]


def _proof(catalog: Catalog, identifier: str, expected: list[Any]) -> Any:
    table = catalog.load_table(identifier)
    assert canonical_rows(read_table(table)) == expected
    assert missing_referenced_files(table) == []
    return table


def _optimizer_snapshots(table: Table) -> list[Any]:
    table.refresh()
    return [s for s in table.metadata.snapshots if s.summary and s.summary[PROCESS_ID_KEY]]


def test_rerunning_the_commit_task_returns_the_landed_commit(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path
) -> None:
    ident = "safety.twice"
    table = small_file_table(amoro_conn, ident, files=6)
    expected = canonical_rows(read_table(table))
    dag = _dag(tmp_path, ident)
    when = datetime(2025, 1, 1, tzinfo=timezone.utc)
    first = run_dag(dag, logical_date=when)
    assert first.state == "success", task_states(first)
    (landed,) = _optimizer_snapshots(table)
    snapshots = len(table.metadata.snapshots)

    assert rerun_task(dag, first, "commit") == "success"  # clear & re-run the commit task

    table = _proof(amoro_conn, ident, expected)
    assert len(table.metadata.snapshots) == snapshots
    assert table.current_snapshot().snapshot_id == landed.snapshot_id
    metrics = xcom_value(first, "commit")
    assert metrics["snapshot_id"] == landed.snapshot_id and metrics["status"] == "SUCCESS"


def test_rerunning_the_commit_after_the_landed_snapshot_expired(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path
) -> None:
    ident = "safety.expired"
    table = small_file_table(amoro_conn, ident, files=6)
    dag = _dag(tmp_path, ident)
    when = datetime(2025, 1, 2, tzinfo=timezone.utc)
    first = run_dag(dag, logical_date=when)
    assert first.state == "success"
    (landed,) = _optimizer_snapshots(table)
    table.append(table.scan().to_arrow().slice(0, 0))  # a later snapshot, so the landed one can expire
    table.refresh()
    assert (
        landed.snapshot_id
        in expire_snapshots(table, keep_min_count=1, keep_duration_ms=0).expired_snapshot_ids
    )
    assert _optimizer_snapshots(table) == []
    expected = canonical_rows(read_table(table))

    assert rerun_task(dag, first, "commit") == "success"

    _proof(amoro_conn, ident, expected)
    assert xcom_value(first, "commit")["snapshot_id"] == landed.snapshot_id


def _unknown_once(base: Any, *, applied: bool) -> Any:
    """A catalog like ``base`` whose next commit raises CommitStateUnknownException.

    ``applied``: the commit is applied first (the connection dropped after the catalog answered);
    else it is not applied at all (no answer).
    """
    from pyiceberg.catalog.sql import SqlCatalog

    armed = [1]

    class UnknownOnce(SqlCatalog):
        def commit_table(self, table: Table, requirements: Any, updates: Any) -> Any:
            if not armed[0]:
                return super().commit_table(table, requirements, updates)
            armed[0] = 0
            if applied:
                super().commit_table(table, requirements, updates)
            raise CommitStateUnknownException(f"injected (commit applied: {applied})")

    return UnknownOnce(base.name, **base.properties)


def test_commit_state_unknown_is_kept_then_resolved_by_the_next_run(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

    ident = "safety.unknown"
    table = small_file_table(amoro_conn, ident, files=6)
    expected = canonical_rows(read_table(table))
    faulty = _unknown_once(amoro_conn, applied=True)
    monkeypatch.setattr(AmoroCatalogHook, "get_catalog", lambda self: faulty)
    dag = _dag(tmp_path, ident)

    first = run_dag(dag, logical_date=datetime(2025, 1, 3, tzinfo=timezone.utc))

    assert task_states(first)[("commit", -1)] == "failed"
    runtime = get_table_runtime("amoro_default", ident)
    assert runtime.last_process is not None and runtime.last_process.status == ProcessStatus.UNKNOWN.value
    table = _proof(amoro_conn, ident, expected)  # the snapshot landed: every file it names is there
    (landed,) = _optimizer_snapshots(table)

    second = run_dag(dag, logical_date=datetime(2025, 1, 4, tzinfo=timezone.utc))

    assert second.state == "success", task_states(second)
    teardown = xcom_value(second, "resolve")
    assert teardown["landed"] is True and teardown["snapshot_id"] == landed.snapshot_id
    assert teardown["previous_status"] == "UNKNOWN"
    runtime = get_table_runtime("amoro_default", ident)
    assert runtime.last_optimized_snapshot_id == landed.snapshot_id
    table = _proof(amoro_conn, ident, expected)
    assert unreferenced_data_files(table) == []


def _one_task_dag(dag_id: str, identifier: str) -> Any:
    from airflow.sdk import DAG

    from airflow_provider_amoro.operators.optimizing import SelfOptimizingOperator

    with DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
        SelfOptimizingOperator(task_id="optimize", table=identifier, retries=0)
    return dag


def test_unknown_commit_that_did_not_land_is_cleaned_by_the_next_run(
    airflow_db: Any, amoro_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog raises CommitStateUnknownException without applying: outputs kept, then deleted."""
    from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

    ident = "safety.notlanded"
    table = small_file_table(amoro_conn, ident, files=6)
    expected = canonical_rows(read_table(table))
    faulty = _unknown_once(amoro_conn, applied=False)
    monkeypatch.setattr(AmoroCatalogHook, "get_catalog", lambda self: faulty)
    dag = _one_task_dag("safety_not_landed", ident)

    first = run_dag(dag)

    assert task_states(first)[("optimize", -1)] == "failed"
    runtime = get_table_runtime("amoro_default", ident)
    assert runtime.last_process is not None and runtime.last_process.status == "UNKNOWN"
    leftovers = unreferenced_data_files(table)
    assert leftovers, "the outputs of an UNKNOWN commit are kept"
    assert _optimizer_snapshots(table) == []

    second = run_dag(dag)

    assert second.state == "success", task_states(second)
    table = _proof(amoro_conn, ident, expected)
    assert len(_optimizer_snapshots(table)) == 1  # planned again and committed
    assert unreferenced_data_files(table) == []
    resolved = [p for p in _history(ident) if p.teardown]
    assert resolved and resolved[0].status == "FAILED" and resolved[0].teardown["landed"] is False
    assert resolved[0].teardown["deleted"] == len(leftovers)


def _commit_then_time_out(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make the engine's commit time out right after the catalog applied it; returns the undo."""
    from airflow.sdk.exceptions import AirflowTaskTimeout

    # the engine's commit as the process's commit step calls it (every driver goes through it)
    import airflow_provider_amoro.optimizing.process as engine

    real_commit = engine.commit

    def commit_then_time_out(*args: Any, **kwargs: Any) -> Any:
        real_commit(*args, **kwargs)
        raise AirflowTaskTimeout("injected: execution_timeout reached")

    monkeypatch.setattr(engine, "commit", commit_then_time_out)
    return lambda: monkeypatch.setattr(engine, "commit", real_commit)


def test_a_task_timeout_keeps_outputs_and_the_next_run_resolves(
    airflow_db: Any, amoro_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timeout inside the commit (here: after the catalog applied it) never deletes outputs."""
    ident = "safety.timeout"
    table = small_file_table(amoro_conn, ident, files=6)
    expected = canonical_rows(read_table(table))
    restore = _commit_then_time_out(monkeypatch)
    dag = _one_task_dag("safety_timeout", ident)
    first = run_dag(dag)
    assert task_states(first)[("optimize", -1)] == "failed"
    assert get_table_runtime("amoro_default", ident).last_process.status == "UNKNOWN"
    table = _proof(amoro_conn, ident, expected)
    (landed,) = _optimizer_snapshots(table)
    restore()

    second = run_dag(dag)

    assert second.state == "success", task_states(second)
    runtime = get_table_runtime("amoro_default", ident)
    assert runtime.last_optimized_snapshot_id == landed.snapshot_id
    assert any(p.status == "SUCCESS" and p.teardown for p in _history(ident))
    table = _proof(amoro_conn, ident, expected)
    assert unreferenced_data_files(table) == []


def _history(identifier: str) -> list[Any]:
    from airflow_provider_amoro.runtime.reader import get_optimizing_history

    return get_optimizing_history("amoro_default", identifier)


def test_a_split_dag_without_resolve_task_settles_the_last_process_at_plan(
    airflow_db: Any, amoro_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-written evaluate/plan/execute/commit DAG: its plan task resolves an UNKNOWN process first."""
    from airflow.sdk import DAG

    from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook
    from airflow_provider_amoro.operators.optimizing import (
        CommitOptimizingOperator,
        EvaluateOptimizingOperator,
        ExecuteOptimizingTaskOperator,
        PlanOptimizingOperator,
    )

    ident = "safety.split"
    table = small_file_table(amoro_conn, ident, files=6)
    expected = canonical_rows(read_table(table))
    faulty = _unknown_once(amoro_conn, applied=False)
    monkeypatch.setattr(AmoroCatalogHook, "get_catalog", lambda self: faulty)
    with DAG("safety_split", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
        evaluate = EvaluateOptimizingOperator(task_id="evaluate", table=ident)
        plan = PlanOptimizingOperator(task_id="plan", table=ident)
        execute = ExecuteOptimizingTaskOperator.partial(task_id="execute", table=ident).expand(
            task=plan.output
        )
        commit = CommitOptimizingOperator(task_id="commit", table=ident, retries=0)
        evaluate >> plan
        execute >> commit

    first = run_dag(dag)
    assert task_states(first)[("commit", -1)] == "failed"
    assert get_table_runtime("amoro_default", ident).last_process.status == "UNKNOWN"
    leftovers = unreferenced_data_files(table)
    assert leftovers

    second = run_dag(dag)

    assert second.state == "success", task_states(second)
    table = _proof(amoro_conn, ident, expected)
    assert len(_optimizer_snapshots(table)) == 1
    assert unreferenced_data_files(table) == []
    resolved = [p for p in _history(ident) if p.teardown]
    assert resolved and resolved[0].status == "FAILED" and resolved[0].teardown["deleted"] == len(leftovers)


def test_a_commit_task_timeout_is_unknown_then_resolved_by_the_resolve_task(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generated DAG's commit task times out after the catalog applied the commit: nothing deleted."""
    ident = "safety.committimeout"
    table = small_file_table(amoro_conn, ident, files=6)
    expected = canonical_rows(read_table(table))
    restore = _commit_then_time_out(monkeypatch)
    dag = _dag(tmp_path, ident)
    first = run_dag(dag, logical_date=datetime(2025, 1, 5, tzinfo=timezone.utc))
    assert task_states(first)[("commit", -1)] == "failed"
    assert get_table_runtime("amoro_default", ident).last_process.status == "UNKNOWN"
    table = _proof(amoro_conn, ident, expected)
    (landed,) = _optimizer_snapshots(table)
    restore()

    second = run_dag(dag, logical_date=datetime(2025, 1, 6, tzinfo=timezone.utc))

    assert second.state == "success", task_states(second)
    teardown = xcom_value(second, "resolve")
    assert teardown["previous_status"] == "UNKNOWN" and teardown["landed"] is True
    assert get_table_runtime("amoro_default", ident).last_optimized_snapshot_id == landed.snapshot_id
    table = _proof(amoro_conn, ident, expected)
    assert unreferenced_data_files(table) == []
