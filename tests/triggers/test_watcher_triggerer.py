"""End to end: a real ``airflow triggerer`` runs TableChangeTrigger as an AssetWatcher.

An external append creates an event on the table's change asset; the optimizer's own REPLACE
commit does not; the watcher keeps its last seen snapshot in the asset state store.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, AssetWatcher
from airflow.utils.session import create_session
from airflow_fixtures import append_rows, compact_all, small_file_table, sync_dag

from airflow_provider_amoro.assets import table_change_asset
from airflow_provider_amoro.triggers.table_change import WATCHER_STATE_KEY, TableChangeTrigger

pytestmark = pytest.mark.integration


def _events(uri: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
        ).all()
    return [dict(r or {}) for r in rows]


def _stored(uri: str, key: str) -> Any:
    import json

    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(AssetStateStoreModel.value)
            .join(AssetModel, AssetModel.id == AssetStateStoreModel.asset_id)
            .where(AssetModel.uri == uri, AssetStateStoreModel.key == key)
        )
    return None if value is None else json.loads(value)


def _wait(predicate: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; triggerer log:\n{log.read_text()[-4000:]}")


def _drop_other_triggers() -> None:
    """Earlier tests of the session leave watchers (some on catalogs that never answer) in the shared
    metadata DB; the triggerer of this test must run only the trigger this test registers."""
    from airflow.models.asset import AssetWatcherModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from sqlalchemy import delete, update

    with create_session() as session:
        session.execute(
            update(TaskInstance).where(TaskInstance.trigger_id.is_not(None)).values(trigger_id=None)
        )
        session.execute(delete(AssetWatcherModel))
        session.execute(delete(Trigger))


@pytest.fixture
def triggerer(airflow_db: Path, tmp_path: Path) -> Iterator[Path]:
    _drop_other_triggers()
    log = tmp_path / "triggerer.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "triggerer", "--capacity", "10"],
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_asset_watcher_fires_on_external_commits_only(amoro_conn: Any, triggerer: Path) -> None:
    from airflow.models.dag import DagModel
    from sqlalchemy import update

    table = small_file_table(amoro_conn, "db.watched", files=1)
    watcher = AssetWatcher(
        name="watched_commits", trigger=TableChangeTrigger(table="db.watched", poll_interval=0.3)
    )
    changes = table_change_asset("amoro_default", "db.watched", watchers=[watcher])
    with DAG("test_watched", schedule=[changes], start_date=dt.datetime(2024, 1, 1), catchup=False) as dag:
        pass
    sync_dag(dag)
    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag.dag_id).values(is_paused=False))
    sync_dag(dag)  # now the asset is used by an unpaused DAG: its watcher trigger is registered

    # The watcher starts, takes the branch head as its baseline and stores it.
    _wait(lambda: _stored(changes.uri, WATCHER_STATE_KEY) is not None, 90, "the watcher baseline", triggerer)
    assert _stored(changes.uri, WATCHER_STATE_KEY) == table.current_snapshot().snapshot_id

    optimize_id = compact_all(table)
    _wait(
        lambda: _stored(changes.uri, WATCHER_STATE_KEY) == optimize_id, 30, "the OPTIMIZE snapshot", triggerer
    )
    assert _events(changes.uri) == []  # the optimizer's commit created no event

    append_id = append_rows(table, [77])
    _wait(lambda: len(_events(changes.uri)) == 1, 30, "an asset event", triggerer)
    extra = _events(changes.uri)[0]
    assert extra["from_trigger"] is True
    event = extra["payload"]
    assert event["snapshot_id"] == append_id and event["previous_snapshot_id"] == optimize_id
    assert [s["operation"] for s in event["snapshots"]] == ["append"]
