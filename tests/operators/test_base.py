"""AmoroTableOperator: asset declaration, table loading, asset events and state recording via dag.test()."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
from airflow.sdk import DAG
from airflow_fixtures import asset_events, run_dag, task_states, xcom_value

from airflow_provider_amoro.assets import table_asset
from airflow_provider_amoro.operators.base import AmoroTableOperator
from airflow_provider_amoro.runtime import get_table_runtime

SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.string())])


class _AppendOperator(AmoroTableOperator):
    """A table-changing test operator: appends rows and records a maintenance-style run."""

    changes_table = True

    def execute(self, context: Any) -> dict[str, Any]:
        table = self.load_table()
        table.append(pa.table({"id": [10, 11], "v": ["x", "y"]}, schema=SCHEMA))
        snap = table.current_snapshot()
        assert snap is not None
        metrics = {"rows_added": 2}
        self.emit_table_event(context, operation="append", metrics=metrics, snapshot_id=snap.snapshot_id)
        self.state(context).record_maintenance("test_append", metrics)
        return {"snapshot_id": snap.snapshot_id, **metrics}


class _ReadOperator(AmoroTableOperator):
    def execute(self, context: Any) -> int:
        return int(self.load_table().scan().to_arrow().num_rows)


def test_asset_is_outlet_only_when_the_operator_changes_the_table() -> None:
    asset = table_asset("amoro_default", "db.t")
    writer = _AppendOperator(task_id="w", table="db.t")
    reader = _ReadOperator(task_id="r", table="db.t")
    assert asset in writer.outlets and asset not in writer.inlets
    assert asset in reader.inlets and asset not in reader.outlets
    templated = _AppendOperator(task_id="t", table="{{ params.t }}")
    assert templated.outlets == [] and templated.template_fields == ("table", "amoro_conn_id")


def test_operator_changes_table_emits_event_and_records_state(airflow_db: Any, amoro_conn: Any) -> None:
    amoro_conn.create_namespace("db")
    amoro_conn.create_table("db.base_t", schema=SCHEMA).append(
        pa.table({"id": [1, 2, 3], "v": ["a", "b", "c"]}, schema=SCHEMA)
    )
    with DAG("test_base_op", schedule=None, start_date=dt.datetime(2024, 1, 1), catchup=False) as dag:
        w = _AppendOperator(task_id="append", table="db.base_t")
        r = _ReadOperator(task_id="read", table="db.base_t")
        w >> r
    dr = run_dag(dag)
    assert dr.state == "success", task_states(dr)
    assert xcom_value(dr, "read") == 5
    out = xcom_value(dr, "append")
    uri = table_asset("amoro_default", "db.base_t").uri
    events = [e for e in asset_events(uri) if e["run_id"] == dr.run_id]
    assert len(events) == 1, events  # the read-only task emitted nothing
    extra = events[0]["extra"]
    assert extra["operation"] == "append" and extra["metrics"] == {"rows_added": 2}
    assert extra["snapshot_id"] == out["snapshot_id"] and extra["table"] == "db.base_t"
    rt = get_table_runtime("amoro_default", "db.base_t")
    assert rt.maintenance["test_append"].result == {"rows_added": 2}
    assert rt.maintenance["test_append"].run_id == dr.run_id
