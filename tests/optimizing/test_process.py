"""The optimizing process object: its JSON between steps, and each step on a real table."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from airflow_provider_amoro.optimizing.model import IOCounters, RewriteTask, TaskResult
from airflow_provider_amoro.optimizing.process import OptimizingProcess
from airflow_provider_amoro.properties import OptimizingKind
from airflow_provider_amoro.testing.deletes import live_data_files
from airflow_provider_amoro.testing.reader import content_hash, read_table

SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.string())])


def _small_files(catalog: Any, name: str = "db.proc", files: int = 5) -> Any:
    catalog.create_namespace_if_not_exists("db")
    table = catalog.create_table(
        name,
        schema=SCHEMA,
        properties={
            "self-optimizing.target-size": str(1024 * 1024),
            "self-optimizing.minor.trigger.file-count": "3",
        },
    )
    for i in range(files):
        ids = list(range(i * 40, i * 40 + 40))
        table.append(pa.table({"id": ids, "v": [f"row-{n}" for n in ids]}, schema=SCHEMA))
    return table


def _hop(process: OptimizingProcess) -> OptimizingProcess:
    """What travels between two Airflow tasks: the process as JSON text, read back."""
    text = process.to_json()
    back = OptimizingProcess.from_json(text)
    assert back == process and back.to_dict() == json.loads(text)
    return back


def test_the_process_crosses_every_step_as_json_and_commits_the_same_rows(catalog: Any) -> None:
    table = _small_files(catalog)
    before = read_table(table)
    messages: list[str] = []

    process = OptimizingProcess.start(table, progress=messages.append)
    process.evaluate(table)
    assert process.evaluated_kind is OptimizingKind.MINOR and process.has_work
    process.plan()
    assert process.planned is not None and process.planned.tasks
    planned = _hop(process)
    assert planned.to_dict()["counters"]["input_files"] == 5  # planned inputs before any task ran

    # each "worker" gets its own task as JSON and returns its result as JSON
    results = []
    for task_json in [json.dumps(t.to_dict()) for t in planned.planned.tasks]:  # type: ignore[union-attr]
        worker = OptimizingProcess.of_plan(planned.planned)  # type: ignore[arg-type]
        results.append(worker.execute(table, RewriteTask.from_dict(json.loads(task_json))).to_dict())

    committer = _hop(OptimizingProcess.of_plan(planned.planned, [TaskResult.from_dict(r) for r in results]))  # type: ignore[arg-type]
    committed = committer.commit(table)
    done = _hop(committer)
    assert done.committed_snapshot_id == committed.snapshot_id == table.current_snapshot().snapshot_id
    assert done.base_snapshot_id == process.base_snapshot_id != done.committed_snapshot_id
    assert done.counters() == IOCounters(
        input_files=5,
        input_bytes=done.counters().input_bytes,
        input_records=200,
        output_files=1,
        output_bytes=done.counters().output_bytes,
        output_records=200,
    )
    assert content_hash(read_table(table)) == content_hash(before)
    assert len(live_data_files(table)) == 1
    assert any("evaluated kind minor" in m for m in messages) and any("tasks" in m for m in messages)

    # the commit is idempotent: the same JSON committed again finds the landed snapshot
    again = OptimizingProcess.from_json(done.to_json()).commit(table)
    assert again.already_committed and again.snapshot_id == committed.snapshot_id


def test_plan_needs_its_evaluation_and_an_unknown_kind_is_named(catalog: Any) -> None:
    table = _small_files(catalog, "db.order", files=2)
    with pytest.raises(
        ValueError, match="unknown optimizing kind 'huge'; expected one of: minor, major, full, auto"
    ):
        OptimizingProcess.start(table, "huge")
    process = OptimizingProcess.start(table, "FULL")
    assert process.requested_kind is OptimizingKind.FULL
    with pytest.raises(RuntimeError, match="evaluate"):
        process.plan()
    with pytest.raises(RuntimeError, match="plan"):
        process.commit(table)


def test_io_counters_add_up() -> None:
    a = IOCounters(
        input_files=1, input_bytes=10, input_records=3, output_files=1, output_bytes=8, output_records=3
    )
    assert a + a == IOCounters(
        input_files=2, input_bytes=20, input_records=6, output_files=2, output_bytes=16, output_records=6
    )
    assert IOCounters.total([]) == IOCounters()
    result = TaskResult(
        task_id=0,
        outputs=[{}, {}],
        input_files=4,
        input_bytes=5,
        input_records=6,
        output_records=6,
        output_bytes=7,
    )
    assert IOCounters.of_result(result).counters_dict() == {
        "input_files": 4,
        "input_bytes": 5,
        "input_records": 6,
        "output_files": 2,
        "output_bytes": 7,
        "output_records": 6,
    }
