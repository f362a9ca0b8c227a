"""Maintenance operators run by ``dag.test()`` on a real SQLite catalog (an ``AIRFLOW_CONN_*`` env var)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pyarrow as pa
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from airflow_fixtures import asset_events, run_dag, task_states, xcom_value

from airflow_provider_amoro.assets import table_asset, table_asset_uri
from airflow_provider_amoro.get_provider_info import get_provider_info
from airflow_provider_amoro.operators.base import AmoroTableOperator
from airflow_provider_amoro.operators.maintenance import (
    CleanDanglingDeleteFilesOperator,
    CleanOrphanFilesOperator,
    CreateTagsOperator,
    ExpireDataOperator,
    ExpireSnapshotsOperator,
)
from airflow_provider_amoro.runtime import get_table_runtime
from airflow_provider_amoro.runtime.state import ProcessRecord
from airflow_provider_amoro.testing.deletes import add_position_deletes, live_data_files
from airflow_provider_amoro.testing.reader import read_table

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string())])
OPERATORS = (
    ExpireSnapshotsOperator,
    CleanOrphanFilesOperator,
    CleanDanglingDeleteFilesOperator,
    ExpireDataOperator,
    CreateTagsOperator,
)


def _append_new_row() -> None:
    """A writer's commit after the maintenance commits (expiry keeps the last non-maintenance one)."""
    from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

    table = AmoroCatalogHook(amoro_conn_id="amoro_default").load_table("db.maint")
    now_ms = int(time.time() * 1000)
    table.append(pa.table({"id": [now_ms + 2], "v": ["new"]}, schema=SCHEMA))


def test_operators_are_thin_and_registered() -> None:
    modules = [m for entry in get_provider_info()["operators"] for m in entry["python-modules"]]
    assert "airflow_provider_amoro.operators.maintenance" in modules
    asset = table_asset("amoro_default", "db.t")
    for cls in OPERATORS:
        op = cls(task_id=cls.__name__, table="db.t")
        assert op.template_fields == ("table", "amoro_conn_id")
        assert (asset in op.outlets) is (cls is not CleanOrphanFilesOperator)


def test_maintenance_dag(airflow_db: Any, amoro_conn: Any) -> None:
    amoro_conn.create_namespace("db")
    now_ms = int(time.time() * 1000)
    table = amoro_conn.create_table(
        "db.maint",
        schema=SCHEMA,
        properties={
            "snapshot.keep.duration": "0min",
            "data-expire.enabled": "true",
            "data-expire.level": "file",
            "data-expire.field": "id",  # epoch milliseconds
            "data-expire.retention-time": "1d",
            "data-expire.base-on-rule": "CURRENT_TIME",
            "tag.auto-create.enabled": "true",
            "tag.auto-create.trigger.max-delay.minutes": "1440",
        },
    )
    table.append(pa.table({"id": [1, 2, 3], "v": ["old"] * 3}, schema=SCHEMA))  # 1970: expires
    table.append(pa.table({"id": [now_ms, now_ms + 1], "v": ["new"] * 2}, schema=SCHEMA))
    old_file = next(f.file_path for f in live_data_files(table) if f.record_count == 3)
    add_position_deletes(table, {old_file: [0]})
    stray = f"{table.location().rstrip('/')}/data/stray.parquet"
    with table.io.new_output(stray).create() as out:
        out.write(b"not referenced")

    with DAG("test_maintenance_ops", schedule=None, start_date=dt.datetime(2024, 1, 1), catchup=False) as dag:
        data = ExpireDataOperator(task_id="expire_data", table="db.maint")
        dangling = CleanDanglingDeleteFilesOperator(task_id="dangling", table="db.maint")
        write = PythonOperator(task_id="write", python_callable=_append_new_row)
        tags = CreateTagsOperator(task_id="tags", table="db.maint")
        expire = ExpireSnapshotsOperator(task_id="expire", table="db.maint")
        orphans = CleanOrphanFilesOperator(
            task_id="orphans",
            table="db.maint",
            min_existing_time_minutes=0,
            property_overrides={"clean-orphan-file.enabled": "true"},  # as the DAG factory passes them
        )
        data >> dangling >> write >> expire >> tags >> orphans
    dr = run_dag(dag)
    assert dr.state == "success", task_states(dr)

    data_result = xcom_value(dr, "expire_data")
    assert data_result["expired_data_files"] == 1 and data_result["expired_delete_files"] == 1
    assert xcom_value(dr, "dangling")["removed_paths"] == []
    tag_result = xcom_value(dr, "tags")
    assert tag_result["created"] is True
    expire_result = xcom_value(dr, "expire")
    assert expire_result["deleted_data_files"] >= 1 and expire_result["deleted_delete_files"] == 1
    assert xcom_value(dr, "orphans")["deleted_files"] == 1

    table.refresh()
    assert sorted(read_table(table).column("v").to_pylist()) == ["new", "new", "new"]
    assert tag_result["tag_name"] in table.metadata.refs
    assert not table.io.new_input(stray).exists()

    uri = table_asset_uri("amoro_default", "db.maint")
    events = [e for e in asset_events(uri) if e["run_id"] == dr.run_id]
    assert {e["task_id"] for e in events} == {"expire_data", "dangling", "tags", "expire"}
    by_task = {e["task_id"]: e["extra"] for e in events}
    assert by_task["expire_data"]["producer"] == "amoro-maintenance"
    assert by_task["expire_data"]["changed"] is True and by_task["dangling"]["changed"] is False
    runtime = get_table_runtime("amoro_default", "db.maint")
    assert {"expire_data", "clean_dangling_delete_files", "create_tags", "expire_snapshots"} <= set(
        runtime.maintenance
    )
    assert runtime.maintenance["clean_orphan_files"].result["deleted_files"] == 1


class _RecordRunningProcess(AmoroTableOperator):
    """Records an optimizing process as RUNNING from the table's second snapshot (as a planner would)."""

    changes_table = True

    def __init__(self, *, planned_ago_ms: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.planned_ago_ms = planned_ago_ms

    def execute(self, context: Any) -> int:
        table = self.load_table()
        base = table.snapshots()[1].snapshot_id
        process = ProcessRecord(
            process_id="p1", table=self.table, conn_id=self.amoro_conn_id, kind="minor", status="RUNNING"
        )
        process.base_snapshot_id = base
        process.plan_time_ms = int(time.time() * 1000) - self.planned_ago_ms
        self.state(context).record_process(process)
        return base


def test_expiry_protects_the_running_process_base(airflow_db: Any, amoro_conn: Any) -> None:
    amoro_conn.create_namespace("db")
    table = amoro_conn.create_table("db.busy", schema=SCHEMA, properties={"snapshot.keep.duration": "0min"})
    for i in range(4):
        table.append(pa.table({"id": [i], "v": ["x"]}, schema=SCHEMA))
    ids = [s.snapshot_id for s in table.snapshots()]
    with DAG(
        "test_maintenance_protect", schedule=None, start_date=dt.datetime(2024, 1, 1), catchup=False
    ) as dag:
        running = _RecordRunningProcess(task_id="running", table="db.busy")
        expire = ExpireSnapshotsOperator(task_id="expire", table="db.busy")
        stale = _RecordRunningProcess(task_id="stale", table="db.busy", planned_ago_ms=2 * 86_400_000)
        expire_again = ExpireSnapshotsOperator(task_id="expire_again", table="db.busy")
        running >> expire >> stale >> expire_again
    dr = run_dag(dag)
    assert dr.state == "success", task_states(dr)
    assert xcom_value(dr, "expire")["expired_snapshot_ids"] == [ids[0]]
    # a RUNNING record planned two days ago is a dead process: its base is not protected
    assert sorted(xcom_value(dr, "expire_again")["expired_snapshot_ids"]) == sorted(ids[1:3])
    table.refresh()
    assert [s.snapshot_id for s in table.snapshots()] == ids[3:]
