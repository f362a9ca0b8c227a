"""The self-optimizing engine: pure pyiceberg + pyarrow, no Airflow.

```python
from airflow_provider_amoro.optimizing import OptimizingConfig, evaluate, plan, execute, commit, optimize

cfg = OptimizingConfig.from_table(table)
ev = evaluate(table)                      # kind, health_score, cost, reasons, partitions
p = plan(table)                           # p.tasks, p.base_snapshot_id, p.to_json()
results = [execute(table, t) for t in p.tasks]
c = commit(table, p, results)             # one REPLACE snapshot
res = optimize(table, kind="auto")        # all of the above

process = OptimizingProcess.start(table)  # the same, step by step, JSON between steps
process.evaluate(table); process.plan()
for task in process.pending_tasks():
    process.execute(table, task)
process.commit(table)
```
"""

from __future__ import annotations

from airflow_provider_amoro.optimizing.commit import CommitResult, CommitValidationError, commit
from airflow_provider_amoro.optimizing.config import InvalidPropertyError, OptimizingConfig
from airflow_provider_amoro.optimizing.evaluate import TableEvaluation, evaluate
from airflow_provider_amoro.optimizing.execute import execute
from airflow_provider_amoro.optimizing.model import (
    FileRef,
    IOCounters,
    OptimizingPlan,
    RewriteTask,
    TaskResult,
)
from airflow_provider_amoro.optimizing.optimize import OptimizeResult, optimize
from airflow_provider_amoro.optimizing.plan import plan
from airflow_provider_amoro.optimizing.process import OptimizingProcess
from airflow_provider_amoro.optimizing.read import InputFileError, read_task_batches

__all__ = [
    "CommitResult",
    "CommitValidationError",
    "FileRef",
    "IOCounters",
    "InputFileError",
    "InvalidPropertyError",
    "OptimizeResult",
    "OptimizingConfig",
    "OptimizingPlan",
    "OptimizingProcess",
    "RewriteTask",
    "TableEvaluation",
    "TaskResult",
    "commit",
    "evaluate",
    "execute",
    "optimize",
    "plan",
    "read_task_batches",
]
