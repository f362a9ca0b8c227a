"""Shared Airflow test fixtures: a per-session Airflow home and metadata DB, DAG runs by ``dag.test()``.

Importing this module (the root ``tests/conftest.py`` does, before anything imports Airflow) points
``AIRFLOW_HOME`` at a fresh temporary directory with its own SQLite metadata DB, so tests never
touch ``~/airflow`` or the repository's ``airflow_home``. Set ``AMORO_TEST_AIRFLOW_DB`` to a
SQLAlchemy URL (e.g. a PostgreSQL database) to run the session's Airflow on another DB.

Use from a test package's ``conftest.py``::

    from airflow_fixtures import airflow_db, amoro_conn  # noqa: F401  (fixtures)

and in tests::

    def test_x(airflow_db, amoro_conn, sqlite_catalog):
        dr = run_dag(dag)
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HOME_VAR = "_AMORO_TEST_AIRFLOW_HOME"


def _configure_airflow_env() -> Path:
    """Point Airflow at a per-session temporary home (idempotent; must run before Airflow is imported)."""
    existing = os.environ.get(_HOME_VAR)
    if existing:
        return Path(existing)
    if "airflow" in sys.modules:
        warnings.warn(
            "airflow was imported before tests/airflow_fixtures.py configured AIRFLOW_HOME; "
            "import airflow_fixtures from the root conftest first",
            stacklevel=2,
        )
    home = Path(tempfile.mkdtemp(prefix="amoro-airflow-"))
    (home / "dags").mkdir()
    os.environ[_HOME_VAR] = str(home)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = os.environ.get(
        "AMORO_TEST_AIRFLOW_DB", f"sqlite:///{home / 'airflow.db'}"
    )
    os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    # Airflow generates a JWT secret only when it writes a new airflow.cfg; tests that import Airflow
    # before the session's config exists (or in another order) would then have none. Pin one.
    os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_hex(32))  # 64 chars for HS512
    atexit.register(shutil.rmtree, str(home), True)
    return home


AIRFLOW_TEST_HOME = _configure_airflow_env()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the session's Airflow metadata DB once (about 4 s); yields the Airflow home."""
    marker = AIRFLOW_TEST_HOME / ".migrated"
    if not marker.exists():
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        marker.touch()
    return AIRFLOW_TEST_HOME


def catalog_connection(catalog: Any) -> dict[str, Any]:
    """The ``amoro`` connection (as an ``AIRFLOW_CONN_*`` JSON body) for a pyiceberg SQL catalog."""
    return {
        "conn_type": "amoro",
        "extra": {
            "catalog_type": "sql",
            "uri": catalog.properties["uri"],
            "warehouse": catalog.properties["warehouse"],
            "catalog_name": catalog.name,
        },
    }


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, catalog: Any) -> None:
    """Expose ``catalog`` as Airflow connection ``conn_id`` through an env var.

    Triggers share one catalog client per connection per process and rebuild it only after a
    while; tests change what a connection id points at from one test to the next, so the shared
    client of ``conn_id`` is dropped here.
    """
    from airflow_provider_amoro.triggers.table_change import drop_shared_hook

    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(catalog_connection(catalog)))
    drop_shared_hook(conn_id)


@pytest.fixture
def amoro_conn(sqlite_catalog: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The ``sqlite_catalog`` exposed as connection ``amoro_default``; yields the catalog."""
    set_connection(monkeypatch, "amoro_default", sqlite_catalog)
    yield sqlite_catalog


def sync_dag(dag: Any) -> None:
    """Serialize a DAG defined in test code into the metadata DB (``dag.test()`` needs it there)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )


def run_dag(dag: Any, **kwargs: Any) -> Any:
    """Sync ``dag`` to the DB and run it once with ``dag.test()``; returns the ``DagRun``."""
    sync_dag(dag)
    return dag.test(**kwargs)


def task_states(dag_run: Any) -> dict[tuple[str, int], str | None]:
    """``{(task_id, map_index): state}`` of a DAG run's task instances."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        ).all()
    return {
        (r.task_id, r.map_index): (str(getattr(r.state, "value", r.state)) if r.state else None) for r in rows
    }


def xcom_value(dag_run: Any, task_id: str, *, key: str = "return_value", map_index: int = -1) -> Any:
    """The deserialized XCom value a task instance of ``dag_run`` pushed (None when absent)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
                XComModel.key == key,
            )
        ).first()
    return None if row is None else XComModel.deserialize_value(row)


def asset_events(uri: str) -> list[dict[str, Any]]:
    """Asset events of the asset with ``uri``, oldest first, as dicts (extra, source task and run)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(
                AssetEvent.extra,
                AssetEvent.source_dag_id,
                AssetEvent.source_run_id,
                AssetEvent.source_task_id,
            )
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
        ).all()
    return [
        {"extra": r.extra, "dag_id": r.source_dag_id, "run_id": r.source_run_id, "task_id": r.source_task_id}
        for r in rows
    ]


# ---- small tables for operator/sensor/trigger tests ---------------------------------------------


def small_file_table(catalog: Any, identifier: str, *, files: int = 6, rows_per_file: int = 50) -> Any:
    """Create ``identifier`` with ``files`` small appends (one data file each) and 1 MB target size."""
    import pyarrow as pa

    namespace = identifier.rpartition(".")[0]
    if (namespace,) not in [tuple(n) for n in catalog.list_namespaces()]:
        catalog.create_namespace(namespace)
    schema = pa.schema([("id", pa.int64()), ("v", pa.string())])
    table = catalog.create_table(
        identifier,
        schema=schema,
        properties={
            "self-optimizing.target-size": str(1024 * 1024),
            "self-optimizing.max-task-size-bytes": str(1024 * 1024),
            "self-optimizing.minor.trigger.file-count": "3",
            # tests plan one table again within seconds (Amoro's default waits 60 s between plans)
            "self-optimizing.min-plan-interval": "0",
        },
    )
    for i in range(files):
        start = i * rows_per_file
        ids = list(range(start, start + rows_per_file))
        table.append(pa.table({"id": ids, "v": [f"row-{n}" for n in ids]}, schema=schema))
    return table


def append_rows(table: Any, ids: list[int]) -> int:
    """Append rows with the given ids; returns the new snapshot id."""
    import pyarrow as pa

    table.refresh()
    table.append(pa.table({"id": ids, "v": [f"row-{n}" for n in ids]}, schema=table.schema().as_arrow()))
    snap = table.current_snapshot()
    assert snap is not None
    return int(snap.snapshot_id)


def compact_all(table: Any) -> int:
    """A real optimizer-style commit: rewrite every data file into one (REPLACE, producer OPTIMIZE).

    Uses the engine's ``replace_files`` commit; returns the new snapshot id.
    """
    import uuid

    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    from airflow_provider_amoro.optimizing.commit import replace_files
    from airflow_provider_amoro.testing.deletes import live_data_files

    table.refresh()
    old = live_data_files(table)
    rows = table.scan().to_arrow()
    new = list(
        _dataframe_to_data_files(table_metadata=table.metadata, df=rows, io=table.io, write_uuid=uuid.uuid4())
    )
    for df in new:
        df.spec_id = table.spec().spec_id
    result = replace_files(table, remove_data=old, add_data=new)
    assert result.snapshot_id is not None
    return int(result.snapshot_id)
