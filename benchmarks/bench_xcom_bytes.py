"""Benchmark 6: bytes through the Execution API per mapped execute task, plans of 10 and 1,000 tasks.

A mapped ``execute`` task resolves ``plan.output`` when it starts: Airflow's Task SDK pulls the plan
task's whole return value (one XCom) for every mapped task instance and then picks its item, and the
task also pulls the plan header (key ``plan``). This benchmark builds real plans with the engine on a
real partitioned table (one rewrite task per partition: 10 and 1,000 partitions, two small files
each, SQLite catalog, local warehouse) and measures the JSON bytes of what one mapped task pulls:

- **before**: the return value was the list of full task dicts;
- **now**: the tasks are stored in the warehouse by ``PlanOptimizingOperator`` and the return value
  is one ``{"ref": [offset, length]}`` per task; the task pulls only the small ``plan_properties``
  XCom (planned properties + task file) instead of the whole header (whose per-partition summaries
  grow with the plan), then reads its own line from the warehouse (a ranged read, not through
  Airflow).

The byte counts are the JSON sizes of the XCom values (what the Execution API carries), computed
with the operators' own helpers (``write_plan_tasks``, ``read_plan_task``); no Airflow runs here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks.common import WORK


def _table(root: Path, partitions: int) -> Any:
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import LongType, NestedField

    shutil.rmtree(root, ignore_errors=True)
    (root / "warehouse").mkdir(parents=True)
    catalog = SqlCatalog(
        "bench", uri=f"sqlite:///{root / 'catalog.db'}", warehouse=(root / "warehouse").as_uri()
    )
    catalog.create_namespace("b")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False), NestedField(2, "p", LongType(), required=False)
    )
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="p"))
    table = catalog.create_table(
        "b.t",
        schema=schema,
        partition_spec=spec,
        properties={"self-optimizing.minor.trigger.file-count": "2"},
    )
    for round_no in range(2):
        ids = list(range(round_no * partitions, (round_no + 1) * partitions))
        table.append(pa.table({"id": ids, "p": [i % partitions for i in ids]}, schema=schema.as_arrow()))
    return catalog.load_table("b.t")


def measure(partitions: int) -> dict[str, Any]:
    """Plan a table with ``partitions`` partitions and measure the bytes one mapped task pulls."""
    from airflow_provider_amoro.operators.optimizing import (
        TASKS_LOCATION_KEY,
        plan_tasks_location,
        read_plan_task,
        write_plan_tasks,
    )
    from airflow_provider_amoro.optimizing import plan

    table = _table(WORK / "xcom_bytes" / f"p{partitions}", partitions)
    planned = plan(table, "minor", max_tasks=10_000)
    tasks = [t.to_dict() for t in planned.tasks]
    header = planned.to_dict()
    header["tasks"] = []
    before = len(json.dumps(header)) + len(json.dumps(tasks))
    location = plan_tasks_location(table, "amoro__bench__b__t", "manual__1")
    refs = write_plan_tasks(table, location, tasks)
    header[TASKS_LOCATION_KEY] = location
    own = read_plan_task(table, location, refs[len(refs) // 2]["ref"])
    assert own == tasks[len(tasks) // 2]
    small = {"properties": header.get("properties") or {}, TASKS_LOCATION_KEY: location}
    now = len(json.dumps(small)) + len(json.dumps(refs))
    return {
        "tasks": len(tasks),
        "before_bytes_per_task": before,
        "now_bytes_per_task": now,
        "now_ref_list_bytes": len(json.dumps(refs)),
        "now_header_bytes": len(json.dumps(small)),
        "own_task_bytes_read_from_warehouse": refs[len(refs) // 2]["ref"][1],
        "before_total_for_all_tasks": before * len(tasks),
        "now_total_for_all_tasks": now * len(tasks),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Run benchmark 6; return its JSON-safe result."""
    cases = [measure(n) for n in (10, 1000)]
    for c in cases:
        print(
            f"  {c['tasks']} tasks: {c['before_bytes_per_task']:,} B per task before, "
            f"{c['now_bytes_per_task']:,} B now",
            flush=True,
        )
    return {"name": "xcom_bytes", "quick": quick, "cases": cases}


def summarize(result: dict[str, Any]) -> list[str]:
    """Markdown lines for results.md."""
    out = [
        "Reproduce: `python -m benchmarks.run --only xcom_bytes`.",
        "",
        "| plan tasks | before: bytes per mapped task | now: bytes per mapped task (header + refs) "
        "| of which the reference list | own task read from the warehouse | before: all tasks "
        "| now: all tasks |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        out.append(
            f"| {c['tasks']:,} | {c['before_bytes_per_task']:,} | {c['now_bytes_per_task']:,} "
            f"| {c['now_ref_list_bytes']:,} | {c['own_task_bytes_read_from_warehouse']:,} "
            f"| {c['before_total_for_all_tasks']:,} | {c['now_total_for_all_tasks']:,} |"
        )
    out += [
        "",
        "What remains proportional to the plan's size is Airflow's own resolution of `plan.output` "
        "(it pulls the mapped-over list whole for each mapped task): about 20 bytes per task of the "
        "plan now, instead of the full task (its files with their statistics). The task itself is "
        "read from the warehouse with one ranged read of its own line.",
    ]
    return out


def plot(result: dict[str, Any], folder: Path) -> list[str]:
    """No plot for this one."""
    return []
