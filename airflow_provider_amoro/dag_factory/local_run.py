"""Run a table's generated DAG once, in this process, with ``dag.test()`` (``make demo`` uses it).

Builds the DAGs from the factory configuration, registers the table's DAG in the metadata DB (as
the DAG processor would) and runs it with ``dag.test()``: every task runs in this process through
the Task SDK, so it needs a migrated metadata DB (``airflow db migrate``) but no scheduler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_amoro.dag_factory.config import CONFIG_ENV_VAR, load_config
from airflow_provider_amoro.dag_factory.errors import ConfigError
from airflow_provider_amoro.runtime.state import table_dag_id


@dataclass
class TableDagRun:
    """What one ``dag.test()`` run of a table DAG did.

    Attributes:
        dag_id: the table DAG.
        run_id: the run.
        state: the run's final state (``success`` or ``failed``).
        task_states: ``{task_id or task_id[map_index]: state}``.
        evaluation: the evaluate task's XCom (kind, health, cost, reasons), if any.
        commit: the commit task's metrics, if it committed.
    """

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str | None] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None
    commit: dict[str, Any] | None = None


def default_config_path() -> Path:
    """``$AMORO_DAGS_CONFIG``, else ``$AIRFLOW__CORE__DAGS_FOLDER/amoro.yaml``."""
    env = os.environ.get(CONFIG_ENV_VAR)
    if env:
        return Path(env)
    dags_folder = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if dags_folder:
        return Path(dags_folder) / "amoro.yaml"
    raise ConfigError([], f"no configuration: set {CONFIG_ENV_VAR} or AIRFLOW__CORE__DAGS_FOLDER")


def register_dag(dag: Any) -> None:
    """Serialize ``dag`` into the metadata DB, as the DAG processor does (``dag.test()`` needs it)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)  # type: ignore[no-untyped-call]
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )


def _state(value: Any) -> str | None:
    """A task or run state as a plain string (Airflow gives enums or strings)."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _xcom(dag_id: str, run_id: str, task_id: str) -> Any:
    import json

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        raw = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == -1,
                XComModel.key == "return_value",
            )
        )
    if raw is None:
        return None
    return json.loads(raw) if isinstance(raw, (str, bytes)) else raw


def run_table_dag(
    conn_id: str, identifier: str, *, config: str | os.PathLike[str] | None = None
) -> TableDagRun:
    """Build the factory's DAGs and run the one of ``conn_id``/``identifier`` once with ``dag.test()``.

    Args:
        conn_id: the catalog connection id (a key of ``catalogs`` in the configuration).
        identifier: ``namespace.table``; it must be selected by the configuration.
        config: the configuration file (default: :func:`default_config_path`).

    Raises:
        ConfigError: the configuration is invalid or does not manage this table.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_amoro.dag_factory import build_dags

    cfg = load_config(config or default_config_path())
    if conn_id not in cfg.catalogs or not cfg.catalogs[conn_id].selects(identifier):
        raise ConfigError(["catalogs", conn_id], f"table {identifier!r} is not managed by {cfg.source}")
    dag_id = table_dag_id(conn_id, identifier)
    dags = build_dags(cfg)
    if dag_id not in dags:  # selected but not yet discovered: build it directly
        from airflow_provider_amoro.dag_factory.builder import build_table_dag

        dags[dag_id] = build_table_dag(cfg.resolve(conn_id, identifier), cfg)
    dag = dags[dag_id]
    register_dag(dag)
    dag_run = dag.test()
    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == dag_run.run_id
            )
        ).all()
    states: dict[str, str | None] = {}
    for r in rows:
        key = r.task_id if r.map_index < 0 else f"{r.task_id}[{r.map_index}]"
        states[key] = _state(r.state)
    state = _state(dag_run.state)
    return TableDagRun(
        dag_id=dag_id,
        run_id=dag_run.run_id,
        state=str(state),
        task_states=dict(sorted(states.items())),
        evaluation=_xcom(dag_id, dag_run.run_id, "evaluate"),
        commit=_xcom(dag_id, dag_run.run_id, "commit"),
    )
