"""Optimizing operators run by ``dag.test()`` on real small-file tables in a SQLite catalog.

Every rewrite is checked row for row with the independent reader (iceberg-rust via DataFusion).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, TriggerRule
from airflow_fixtures import append_rows, asset_events, run_dag, small_file_table, task_states, xcom_value

from airflow_provider_amoro.assets import table_asset, table_asset_uri
from airflow_provider_amoro.operators.base import PRODUCER_OPTIMIZER, AmoroTableOperator
from airflow_provider_amoro.operators.optimizing import (
    CommitOptimizingOperator,
    EvaluateOptimizingOperator,
    ExecuteOptimizingTaskOperator,
    MinorOptimizingOperator,
    PlanOptimizingOperator,
    SelfOptimizingOperator,
    retries_for,
)
from airflow_provider_amoro.runtime import (
    TableStatus,
    get_optimizing_history,
    get_table_runtime,
    list_table_runtimes,
)
from airflow_provider_amoro.testing.deletes import add_position_deletes, live_data_files
from airflow_provider_amoro.testing.reader import content_hash, read_table

START = dt.datetime(2024, 1, 1)


class _Maintain(AmoroTableOperator):
    """A read-only stand-in for a maintenance task hung after commit (records its run)."""

    def execute(self, context: Any) -> dict[str, Any]:
        result = {"files": len(live_data_files(self.load_table()))}
        self.state(context).record_maintenance("probe_maintenance", result)
        return result


def _status_now(table: str) -> str:
    return get_table_runtime("amoro_default", table).status


def _split_dag(dag_id: str, table: str, *, between_execute_and_commit: Any = None) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False, max_active_runs=1) as dag:
        evaluate = EvaluateOptimizingOperator(task_id="evaluate", table=table)
        probe_evaluated = PythonOperator(
            task_id="probe_evaluated", python_callable=_status_now, op_args=[table]
        )
        plan = PlanOptimizingOperator(task_id="plan", table=table)
        probe_planned = PythonOperator(task_id="probe_planned", python_callable=_status_now, op_args=[table])
        execute = ExecuteOptimizingTaskOperator.partial(
            task_id="execute", table=table, retries=2, inlets=[table_asset("amoro_default", table)]
        ).expand(task=plan.output)
        probe_executed = PythonOperator(
            task_id="probe_executed",
            python_callable=between_execute_and_commit or _status_now,
            op_args=[table],
        )
        commit = CommitOptimizingOperator(
            task_id="commit", table=table, plan_task_id="plan", execute_task_id="execute"
        )
        maintain = _Maintain(task_id="maintain", table=table, trigger_rule=TriggerRule.NONE_FAILED)
        (
            evaluate
            >> probe_evaluated
            >> plan
            >> probe_planned
            >> execute
            >> probe_executed
            >> commit
            >> maintain
        )
    return dag


def test_split_trio_optimizes_records_state_and_emits_event(airflow_db: Any, amoro_conn: Any) -> None:
    table = small_file_table(amoro_conn, "db.split", files=6)
    before = read_table(table)
    assert len(live_data_files(table)) == 6

    dag = _split_dag("test_split_trio", "db.split")
    dr = run_dag(dag)
    states = task_states(dr)
    assert dr.state == "success", states

    # The table is optimized and holds exactly the same rows.
    table = amoro_conn.load_table("db.split")
    after = read_table(table)
    assert after.num_rows == before.num_rows == 300
    assert content_hash(after) == content_hash(before)
    assert len(live_data_files(table)) == 1
    snap = table.current_snapshot()
    assert snap is not None and snap.summary["snapshot-producer"] == "OPTIMIZE"
    assert snap.summary.operation.value == "replace"

    # XComs: the evaluation, one task dict per mapped execute, the commit metrics.
    evaluation = xcom_value(dr, "evaluate")
    assert evaluation["kind"] == "minor" and evaluation["pending_input_files"] >= 6
    tasks = xcom_value(dr, "plan")
    assert isinstance(tasks, list) and len(tasks) >= 1
    assert {k for k in states if k[0] == "execute"} == {("execute", i) for i in range(len(tasks))}
    metrics = xcom_value(dr, "commit")
    assert metrics["snapshot_id"] == snap.snapshot_id and metrics["kind"] == "minor"
    assert metrics["input_files"] == 6 and metrics["output_records"] == 300

    # The status as readers saw it while the run was going on.
    assert xcom_value(dr, "probe_evaluated") == TableStatus.PLANNING.value
    assert xcom_value(dr, "probe_planned") == TableStatus.MINOR_OPTIMIZING.value
    assert xcom_value(dr, "probe_executed") == TableStatus.COMMITTING.value

    # One asset event, from the commit, marked as the optimizer's, with the metrics.
    events = [
        e for e in asset_events(table_asset_uri("amoro_default", "db.split")) if e["run_id"] == dr.run_id
    ]
    assert [e["task_id"] for e in events] == ["commit"]
    extra = events[0]["extra"]
    assert extra["producer"] == PRODUCER_OPTIMIZER and extra["snapshot_id"] == snap.snapshot_id
    assert extra["metrics"]["output_records"] == 300 and extra["changed"] is True

    # Runtime state, readable afterwards.
    rt = get_table_runtime("amoro_default", "db.split")
    assert rt.status == TableStatus.IDLE.value
    assert rt.last_optimized_snapshot_id == snap.snapshot_id
    assert rt.last_minor_ms is not None and rt.last_major_ms is None and rt.last_full_ms is None
    assert rt.pending is not None and rt.pending["kind"] == "minor"  # what was pending before the run
    assert rt.maintenance["probe_maintenance"].result == {"files": 1}
    assert rt.last_process is not None and rt.last_process.status == "SUCCESS"
    assert rt.dag_id == "amoro__amoro_default__db__split"
    assert "db.split" in [r.table for r in list_table_runtimes()]

    history = get_optimizing_history("amoro_default", "db.split")
    assert len(history) == 1
    proc = history[0]
    assert (
        proc.status == "SUCCESS" and proc.kind == "minor" and proc.committed_snapshot_id == snap.snapshot_id
    )
    assert proc.run_id == dr.run_id and proc.task_count == len(tasks) == len(proc.tasks)
    assert proc.input_files == 6 and proc.output_records == 300
    assert all(t.status == "SUCCESS" and t.attempts == 1 for t in proc.tasks)

    # Second run: nothing pending -> plan/execute/commit skipped, maintenance still runs.
    dr2 = run_dag(dag)
    states2 = task_states(dr2)
    assert dr2.state == "success", states2
    assert states2[("plan", -1)] == "skipped" and states2[("commit", -1)] == "skipped"
    assert states2[("maintain", -1)] == "success"
    assert states2[("probe_evaluated", -1)] == "success"  # not a pipeline task: not skipped
    assert xcom_value(dr2, "probe_evaluated") == TableStatus.IDLE.value
    assert xcom_value(dr2, "evaluate")["kind"] is None
    assert [
        e for e in asset_events(table_asset_uri("amoro_default", "db.split")) if e["run_id"] == dr2.run_id
    ] == []
    assert content_hash(read_table(amoro_conn.load_table("db.split"))) == content_hash(before)
    assert get_table_runtime("amoro_default", "db.split").status == TableStatus.IDLE.value
    assert len(get_optimizing_history("amoro_default", "db.split")) == 1


def _concurrent_position_delete(table_name: str) -> str:
    """Between execute and commit: a writer deletes a row from a file the plan rewrites."""
    from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

    table = AmoroCatalogHook().load_table(table_name)
    victim = sorted(f.file_path for f in live_data_files(table))[0]
    add_position_deletes(table, {victim: [0]})
    return victim


def test_failed_commit_is_recorded_and_the_table_planned_again(airflow_db: Any, amoro_conn: Any) -> None:
    table = small_file_table(amoro_conn, "db.conflict", files=5)
    dag = _split_dag(
        "test_split_conflict", "db.conflict", between_execute_and_commit=_concurrent_position_delete
    )
    dr = run_dag(dag)
    states = task_states(dr)
    assert dr.state == "failed" and states[("commit", -1)] == "failed", states
    assert states[("maintain", -1)] == "upstream_failed"

    # Nothing committed by the optimizer; every row the writer kept is there; outputs removed.
    table = amoro_conn.load_table("db.conflict")
    assert table.current_snapshot().summary.operation.value == "delete"
    rows = read_table(table)
    assert rows.num_rows == 5 * 50 - 1
    results = [xcom_value(dr, "execute", map_index=i) for i in range(len(xcom_value(dr, "plan")))]
    outputs = [o["file_path"] for r in results for o in r["outputs"]]
    assert outputs and not any(os.path.exists(p.removeprefix("file://")) for p in outputs)

    rt = get_table_runtime("amoro_default", "db.conflict")
    assert rt.status == TableStatus.PENDING.value
    assert rt.last_optimized_snapshot_id is None and rt.last_minor_ms is None
    history = get_optimizing_history("amoro_default", "db.conflict")
    assert history[0].status == "FAILED" and "CommitValidationError" in (history[0].failure or "")

    # The next run plans again (from the new snapshot) and succeeds; rows unchanged.
    with DAG("test_split_conflict_retry", schedule=None, start_date=START, catchup=False) as dag2:
        plan = PlanOptimizingOperator(task_id="plan", table="db.conflict")
        execute = ExecuteOptimizingTaskOperator.partial(
            task_id="execute", table="db.conflict", inlets=[table_asset("amoro_default", "db.conflict")]
        ).expand(task=plan.output)
        EvaluateOptimizingOperator(task_id="evaluate", table="db.conflict") >> plan
        execute >> CommitOptimizingOperator(task_id="commit", table="db.conflict")
    dr2 = run_dag(dag2)
    assert dr2.state == "success", task_states(dr2)
    table = amoro_conn.load_table("db.conflict")
    assert content_hash(read_table(table)) == content_hash(rows)
    assert table.current_snapshot().summary["snapshot-producer"] == "OPTIMIZE"
    assert get_table_runtime("amoro_default", "db.conflict").status == TableStatus.IDLE.value
    statuses = [p.status for p in get_optimizing_history("amoro_default", "db.conflict")]
    assert statuses == ["SUCCESS", "FAILED"]


def test_one_task_operators(airflow_db: Any, amoro_conn: Any) -> None:
    auto = small_file_table(amoro_conn, "db.auto", files=4)
    forced = small_file_table(amoro_conn, "db.forced", files=2)  # 2 files: minor not triggered by count
    before_auto, before_forced = read_table(auto), read_table(forced)
    with DAG("test_one_task", schedule=None, start_date=START, catchup=False) as dag:
        SelfOptimizingOperator(task_id="auto", table="db.auto")
        MinorOptimizingOperator(task_id="minor", table="db.forced")
        SelfOptimizingOperator(task_id="idle", table="db.forced", trigger_rule="all_done") << [
            dag.get_task("minor")
        ]
    dr = run_dag(dag)
    assert dr.state == "success", task_states(dr)
    m = xcom_value(dr, "auto")
    assert m["kind"] == "minor" and m["input_files"] == 4 and m["health_after"] >= m["health_before"]
    assert xcom_value(dr, "minor")["kind"] == "minor"
    assert xcom_value(dr, "idle")["kind"] is None
    for name, before in (("db.auto", before_auto), ("db.forced", before_forced)):
        table = amoro_conn.load_table(name)
        assert content_hash(read_table(table)) == content_hash(before)
        assert len(live_data_files(table)) == 1
        rt = get_table_runtime("amoro_default", name)
        assert rt.status == "IDLE" and rt.last_minor_ms is not None
        assert rt.last_optimized_snapshot_id == table.current_snapshot().snapshot_id
        assert get_optimizing_history("amoro_default", name)[0].status == "SUCCESS"
    events = [
        e for e in asset_events(table_asset_uri("amoro_default", "db.forced")) if e["run_id"] == dr.run_id
    ]
    assert {e["task_id"]: e["extra"]["changed"] for e in events} == {"minor": True, "idle": False}


def test_retries_for() -> None:
    assert retries_for(None) == 5
    assert retries_for({"self-optimizing.execute.num-retries": "2"}) == 2
    assert retries_for({"self-optimizing.execute.num-retries": " 0 "}) == 0
    with pytest.raises(ValueError, match="num-retries"):
        retries_for({"self-optimizing.execute.num-retries": "-1"})
    with pytest.raises(ValueError, match="integer"):
        retries_for({"self-optimizing.execute.num-retries": "x"})


def test_operator_arguments() -> None:
    commit = CommitOptimizingOperator(task_id="c", table="db.t")
    assert commit.trigger_rule == TriggerRule.ALL_DONE
    assert PlanOptimizingOperator(task_id="p", table="db.t").template_fields == ("table", "amoro_conn_id")
    with pytest.raises(ValueError, match="kind"):
        PlanOptimizingOperator(task_id="p2", table="db.t", kind="huge")
    with pytest.raises(ValueError, match="kind"):
        SelfOptimizingOperator(task_id="s", table="db.t", kind="huge")
    with pytest.raises(TypeError):
        EvaluateOptimizingOperator(task_id="e", table="db.t", skip_when_idle=True, bogus=1)  # type: ignore[call-arg]


def test_execute_uses_the_planned_properties(amoro_conn: Any) -> None:
    table = small_file_table(amoro_conn, "db.props", files=1)
    op = ExecuteOptimizingTaskOperator(task_id="x", table="db.props", task={})
    assert op.optimizing_config(table).target_size == 1024 * 1024  # the table's own property
    planned = {"self-optimizing.target-size": "4194304"}
    assert op.optimizing_config(table, planned).target_size == 4 * 1024 * 1024
    forced = ExecuteOptimizingTaskOperator(
        task_id="y", table="db.props", task={}, property_overrides={"self-optimizing.target-size": "2097152"}
    )
    assert forced.optimizing_config(table, planned).target_size == 2 * 1024 * 1024


def test_property_overrides_reach_evaluation(airflow_db: Any, amoro_conn: Any) -> None:
    small_file_table(amoro_conn, "db.overridden", files=4)  # minor pending by the table's properties
    quiet = {"self-optimizing.enabled": "false"}
    with DAG("test_overrides", schedule=None, start_date=START, catchup=False) as dag:
        evaluate = EvaluateOptimizingOperator(
            task_id="evaluate", table="db.overridden", property_overrides=quiet
        )
        plan = PlanOptimizingOperator(task_id="plan", table="db.overridden", property_overrides=quiet)
        evaluate >> plan
    dr = run_dag(dag)
    assert dr.state == "success", task_states(dr)
    assert xcom_value(dr, "evaluate")["kind"] is None
    assert task_states(dr)[("plan", -1)] == "skipped"


def test_split_trio_on_a_partitioned_table_with_deletes(airflow_db: Any, amoro_conn: Any) -> None:
    """Plans, results and DataFile statistics travel as XCom JSON across tasks; deletes are applied."""
    import pyarrow as pa
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import LongType, NestedField, StringType

    from airflow_provider_amoro.testing.deletes import upsert_with_equality_deletes

    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "p", StringType(), required=True),
        NestedField(3, "v", StringType(), required=False),
        identifier_field_ids=[1],
    )
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="p"))
    amoro_conn.create_namespace("db")
    table = amoro_conn.create_table(
        "db.cdc",
        schema=schema,
        partition_spec=spec,
        properties={"self-optimizing.target-size": str(1024 * 1024), "format-version": "2"},
    )
    arrow = schema.as_arrow()
    for i in range(4):
        ids = list(range(i * 40, i * 40 + 40))
        table.append(pa.table({"id": ids, "p": [f"p{n % 2}" for n in ids], "v": ["a"] * 40}, schema=arrow))
    first = sorted(f.file_path for f in live_data_files(table))[0]
    add_position_deletes(table, {first: [0, 1, 2]})
    upsert = pa.table({"id": [5, 6, 7, 100], "p": ["p1", "p0", "p1", "p0"], "v": ["b"] * 4}, schema=arrow)
    table = upsert_with_equality_deletes(table, upsert, ["id", "p"])
    before = read_table(table)
    assert before.num_rows == 160 - 3  # 3 deleted by position; the 4 upserts replace 4 rows

    dr = run_dag(_split_dag("test_split_cdc", "db.cdc"))
    assert dr.state == "success", task_states(dr)
    table = amoro_conn.load_table("db.cdc")
    after = read_table(table)
    assert after.num_rows == before.num_rows and content_hash(after) == content_hash(before)
    metrics = xcom_value(dr, "commit")
    assert metrics["snapshot_id"] == table.current_snapshot().snapshot_id
    assert metrics["removed_delete_files"] >= 1
    assert len(xcom_value(dr, "plan")) >= 2  # one task per partition at least
    assert get_optimizing_history("amoro_default", "db.cdc")[0].status == "SUCCESS"


def test_evaluation_summary_is_small() -> None:
    from airflow_provider_amoro.operators.optimizing import evaluation_summary

    parts = [
        {
            "path": f"p={i}",
            "kind": "minor" if i % 2 else None,
            "cost": i,
            "fragment_files": 2,
            "fragment_bytes": 10,
        }
        for i in range(1000)
    ]
    summary = evaluation_summary(
        {
            "kind": "minor",
            "reasons": [f"r{i}" for i in range(500)],
            "partitions": parts,
            "properties": {"a": "b"},
        }
    )
    assert summary["pending_partitions"] == 500 and len(summary["partitions"]) == 20
    assert summary["partitions"][0]["cost"] == 999  # largest cost first
    assert summary["pending_input_files"] == 1000 and summary["pending_input_bytes"] == 5000
    assert len(summary["reasons"]) == 21 and summary["reasons"][-1] == "... and 480 more"
    assert "properties" not in summary


def test_mapped_execute_tasks_get_references_and_the_plan_lives_in_the_warehouse(
    airflow_db: Any, amoro_conn: Any
) -> None:
    """The plan's tasks are stored in the table's warehouse; XCom carries a tiny reference per task."""
    import json
    from pathlib import Path

    import pyarrow as pa
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import LongType, NestedField

    from airflow_provider_amoro.operators.optimizing import PLAN_TASKS_DIR, plan_tasks_location

    schema = Schema(
        NestedField(1, "id", LongType(), required=False), NestedField(2, "p", LongType(), required=False)
    )
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="p"))
    amoro_conn.create_namespace("db")
    table = amoro_conn.create_table(
        "db.refs",
        schema=schema,
        partition_spec=spec,
        properties={
            "self-optimizing.target-size": str(1 << 20),
            "self-optimizing.minor.trigger.file-count": "2",
            "self-optimizing.min-plan-interval": "0",
        },
    )
    for round_no in range(3):
        ids = list(range(round_no * 100, round_no * 100 + 100))
        table.append(pa.table({"id": ids, "p": [i % 5 for i in ids]}, schema=schema.as_arrow()))
    before = read_table(table)

    dag = _split_dag("test_plan_refs", "db.refs")
    dr = run_dag(dag)
    assert dr.state == "success", task_states(dr)
    refs = xcom_value(dr, "plan")
    assert len(refs) == 5  # one task per partition
    assert all(set(r) == {"ref"} and len(json.dumps(r)) <= 32 for r in refs), refs
    header = xcom_value(dr, "plan", key="plan")
    location = header["tasks_location"]
    assert location == plan_tasks_location(table, dr.dag_id, dr.run_id) and f"/{PLAN_TASKS_DIR}/" in location
    stored = [json.loads(line) for line in Path(location.removeprefix("file://")).read_text().splitlines()]
    assert sorted(t["task_id"] for t in stored) == list(range(5))
    # what one mapped execute pulls through the Execution API: the small plan_properties XCom and
    # the reference list, not the header with its per-partition summaries nor the full tasks
    small = xcom_value(dr, "plan", key="plan_properties")
    assert small == {"properties": header["properties"], "tasks_location": location}
    per_task = len(json.dumps(small)) + len(json.dumps(refs))
    full = len(json.dumps(header)) + len(json.dumps(stored))
    assert per_task * 3 < full, (per_task, full)
    after = read_table(amoro_conn.load_table("db.refs"))
    assert (content_hash(after), after.num_rows) == (content_hash(before), before.num_rows)

    # the next plan deletes the previous run's task file
    for round_no in range(3, 5):
        ids = list(range(round_no * 100, round_no * 100 + 100))
        amoro_conn.load_table("db.refs").append(
            pa.table({"id": ids, "p": [i % 5 for i in ids]}, schema=schema.as_arrow())
        )
    dr2 = run_dag(dag)
    assert dr2.state == "success", task_states(dr2)
    assert not Path(location.removeprefix("file://")).exists()
    assert Path(xcom_value(dr2, "plan", key="plan")["tasks_location"].removeprefix("file://")).exists()


def test_min_plan_interval_is_honoured(airflow_db: Any, amoro_conn: Any) -> None:
    """self-optimizing.min-plan-interval: a plan within the interval of the last one skips."""
    table = small_file_table(amoro_conn, "db.paced", files=4)
    with table.transaction() as tx:
        tx.set_properties({"self-optimizing.min-plan-interval": "3600000"})
    dag = _split_dag("test_min_plan_interval", "db.paced")
    first = run_dag(dag)
    assert first.state == "success" and task_states(first)[("plan", -1)] == "success"
    for i in range(3):
        append_rows(amoro_conn.load_table("db.paced"), [5000 + i])
    second = run_dag(dag)
    states = task_states(second)
    assert states[("evaluate", -1)] == "success"  # there is work ...
    assert states[("plan", -1)] == "skipped"  # ... but the last plan is younger than an hour
    assert states[("commit", -1)] == "skipped"
    with amoro_conn.load_table("db.paced").transaction() as tx:
        tx.set_properties({"self-optimizing.min-plan-interval": "0"})
    third = run_dag(dag)
    assert task_states(third)[("plan", -1)] == "success", task_states(third)


def test_the_three_drivers_of_the_process_end_in_the_same_table(airflow_db: Any, amoro_conn: Any) -> None:
    """``optimize()``, ``SelfOptimizingOperator`` and the split operators run the same engine process."""
    from airflow_provider_amoro.optimizing import optimize
    from airflow_provider_amoro.optimizing.model import IO_COUNTER_NAMES

    tables = {
        name: small_file_table(amoro_conn, name, files=5) for name in ("db.engine", "db.one", "db.split3")
    }
    before = {name: content_hash(read_table(t)) for name, t in tables.items()}
    assert len(set(before.values())) == 1  # the same rows in each

    engine = optimize(amoro_conn.load_table("db.engine")).to_dict()
    with DAG("test_three_drivers_one", schedule=None, start_date=START, catchup=False) as one_dag:
        SelfOptimizingOperator(task_id="optimize", table="db.one")
    one_run = run_dag(one_dag)
    split_run = run_dag(_split_dag("test_three_drivers_split", "db.split3"))
    assert one_run.state == split_run.state == "success", (task_states(one_run), task_states(split_run))
    one, split = xcom_value(one_run, "optimize"), xcom_value(split_run, "commit")

    for metrics in (one, split):
        assert metrics["kind"] == engine["kind"] == "minor"
        assert metrics["tasks"] == engine["tasks"] == 1
        # output bytes differ by a few bytes of Parquet footer (file-specific metadata), nothing else
        same = [k for k in IO_COUNTER_NAMES if k != "output_bytes"]
        assert {k: metrics[k] for k in same} == {k: engine[k] for k in same}
        assert abs(metrics["output_bytes"] - engine["output_bytes"]) < 100
    for name, table in tables.items():
        table = amoro_conn.load_table(name)
        assert content_hash(read_table(table)) == before[name]
        assert len(live_data_files(table)) == 1
        summary = table.current_snapshot().summary
        assert summary["optimizing.kind"] == "minor" and summary["optimizing.output-records"] == "250"
