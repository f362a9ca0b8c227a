"""Runtime state of managed tables: status, last optimizing times, maintenance runs, process history.

Writers are operators (through the Task SDK's asset state store, see ``runtime.recorder``); readers,
like the UI, use the functions below (they read Airflow's metadata DB). Design: ``docs/runtime.md``.
"""

from __future__ import annotations

from airflow_provider_amoro.runtime.reader import (
    get_optimizing_history,
    get_table_runtime,
    list_table_runtimes,
)
from airflow_provider_amoro.runtime.state import (
    MaintenanceRecord,
    ProcessRecord,
    ProcessStatus,
    TableRuntime,
    TableStatus,
    TaskRecord,
    table_dag_id,
)

__all__ = [
    "MaintenanceRecord",
    "ProcessRecord",
    "ProcessStatus",
    "TableRuntime",
    "TableStatus",
    "TaskRecord",
    "get_optimizing_history",
    "get_table_runtime",
    "list_table_runtimes",
    "table_dag_id",
]
