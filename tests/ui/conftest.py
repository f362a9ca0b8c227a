"""Fixtures of the Lakehouse UI tests: the real api-server app, tokens, a cache dir, real tables."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from airflow_fixtures import airflow_db, amoro_conn, set_connection  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def api_app(airflow_db: Path) -> Any:  # noqa: F811 - the imported fixture
    """Airflow's real api-server app (SimpleAuthManager), with the provider's plugin mounted."""
    from airflow.api_fastapi.app import create_app

    return create_app()


@pytest.fixture(scope="session")
def client(api_app: Any) -> Iterator[Any]:
    """A TestClient on the api-server app (no credentials)."""
    from fastapi.testclient import TestClient

    with TestClient(api_app) as c:
        yield c


def make_token(username: str = "admin", role: str | None = "admin") -> str:
    """A JWT signed by the api-server's auth manager for a SimpleAuthManager user."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role)))


@pytest.fixture(scope="session")
def auth(api_app: Any) -> dict[str, str]:
    """Authorization header of an admin."""
    return {"Authorization": f"Bearer {make_token()}"}


@pytest.fixture
def ui_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, empty catalog-sync cache dir; the UI's in-process memos cleared. Yields the cache dir."""
    from airflow_provider_amoro.ui import sources

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("AMORO_CACHE_DIR", str(cache))
    monkeypatch.delenv("AMORO_DAGS_CONFIG", raising=False)
    sources.reset_catalogs()
    yield cache
    sources.reset_catalogs()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_api_server(log_path: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """``airflow api-server`` (one worker) on a free loopback port until it is healthy; yields its URL.

    It inherits this process's environment (the session's AIRFLOW_HOME, metadata DB and JWT secret,
    ``AMORO_CACHE_DIR``) overlaid with ``env``; its output goes to ``log_path``. Stopped with
    SIGTERM (SIGKILL after 30 s) at exit.
    """
    port = free_port()
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"api-server exited: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("api-server did not become healthy in 180 s")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def write_synthetic_cache(cache_dir: Path, conn_id: str, n: int) -> Path:
    """A catalog-sync cache file (the DAG factory's format) of ``n`` synthetic tables."""
    tables = {}
    for i in range(n):
        files = 10 + i % 300
        deletes = i % 7
        size = files * (1 + i % 64) * 1024 * 1024
        tables[f"ns{i % 10}.t{i:04d}"] = {
            "properties": {"self-optimizing.group": "g1" if i % 2 else "default"},
            "summary": {
                "snapshot_id": 1000 + i,
                "timestamp_ms": 1_700_000_000_000 + i,
                "operation": "append",
                "total-data-files": str(files),
                "total-delete-files": str(deletes),
                "total-records": str(files * 1000),
                "total-files-size": str(size),
            },
            "cost": i * 1024 * 1024,
            "health": 100 - i % 101,
            "pending": i % 3 == 0,
            "error": None,
        }
    path = cache_dir / f"catalog__{conn_id}.json"
    path.write_text(
        json.dumps(
            {"version": 1, "conn_id": conn_id, "synced_at": "2026-01-01T00:00:00+00:00", "tables": tables}
        )
    )
    return path


def create_demo_table(catalog: Any, identifier: str = "lake.orders", *, batches: int = 6) -> Any:
    """A partitioned, sorted table with Amoro properties, several appends and a position delete."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.table.sorting import SortField, SortOrder
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import LongType, NestedField, StringType

    schema = Schema(
        NestedField(1, "id", LongType(), required=True, doc="order id"),
        NestedField(2, "region", StringType(), required=False),
        NestedField(3, "amount", LongType(), required=False),
    )
    spec = PartitionSpec(
        PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="region")
    )
    order = SortOrder(SortField(source_id=1, transform=IdentityTransform()))
    namespace = identifier.rsplit(".", 1)[0]
    catalog.create_namespace_if_not_exists(namespace)
    table = catalog.create_table(
        identifier,
        schema=schema,
        partition_spec=spec,
        sort_order=order,
        properties={
            "self-optimizing.target-size": str(1024 * 1024),
            "self-optimizing.minor.trigger.file-count": "3",
            "clean-orphan-file.enabled": "true",
            "write.format.default": "parquet",
        },
    )
    arrow_schema = pa.schema(
        [pa.field("id", pa.int64(), nullable=False), ("region", pa.string()), ("amount", pa.int64())]
    )
    for b in range(batches):
        ids = list(range(b * 100, b * 100 + 100))
        table.append(
            pa.table(
                {"id": ids, "region": ["eu" if i % 2 else "us" for i in ids], "amount": [i * 3 for i in ids]},
                schema=arrow_schema,
            )
        )
    from airflow_provider_amoro.testing.deletes import add_position_deletes, live_data_files

    first = sorted(live_data_files(table), key=lambda f: f.file_path)[0]
    add_position_deletes(table, {first.file_path: [0, 1, 2]})
    return catalog.load_table(identifier)
