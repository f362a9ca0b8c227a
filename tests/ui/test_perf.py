"""The tables list of 1,000 tables renders in under 2 s, from cached summaries only."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import write_synthetic_cache

N = 1000
LIMIT_S = 2.0


def _timed_get(client: Any, url: str, headers: dict[str, str]) -> tuple[Any, float]:
    start = time.perf_counter()
    r = client.get(url, headers=headers)
    return r, time.perf_counter() - start


def test_list_of_1000_tables_from_cache_under_2s(client: Any, auth: dict[str, str], ui_env: Path) -> None:
    from airflow_provider_amoro.ui import sources

    # A running server has imported its modules and compiled its templates: warm up on a 1-table cache.
    write_synthetic_cache(ui_env, "synthetic", 1)
    assert client.get("/amoro/", headers=auth).status_code == 200
    # Connection "synthetic" does not exist: any catalog access would fail loudly.
    write_synthetic_cache(ui_env, "synthetic", N)
    r, first = _timed_get(client, "/amoro/", auth)  # first request after the sync: parses the cache file
    assert r.status_code == 200
    assert r.text.count('<tr data-search="') == N
    assert first < LIMIT_S, f"first render of {N} tables took {first:.2f}s"
    r, again = _timed_get(client, "/amoro/?sort=health_score&order=desc", auth)
    assert r.status_code == 200 and again < LIMIT_S
    r, api = _timed_get(client, "/amoro/api/v1/tables?sort=total_size", auth)
    assert r.status_code == 200 and r.json()["total"] == N and api < LIMIT_S
    assert sources._catalogs == {}, "the list must not load any catalog"
    print(f"\n{N} tables: page {first:.3f}s (first), {again:.3f}s (sorted), API {api:.3f}s")


@pytest.fixture
def registered_assets(airflow_db: Path) -> Iterator[list[str]]:
    """N table assets registered in Airflow with runtime state (status, evaluation, optimized, history)."""
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    from airflow_provider_amoro.assets import table_asset_uri

    uris = [table_asset_uri("synthetic", f"ns{i % 10}.t{i:04d}") for i in range(N)]
    history = [
        {
            "process_id": f"amoro__synthetic__x/run{j}",
            "table": "x",
            "conn_id": "synthetic",
            "kind": "minor",
            "status": "SUCCESS",
            "plan_time_ms": 1_700_000_000_000 + j,
            "end_time_ms": 1_700_000_001_000 + j,
            "tasks": [{"task_id": k, "input_files": 4, "output_files": 1} for k in range(20)],
        }
        for j in range(10)
    ]
    with create_session() as session:
        models = [AssetModel(name=u, uri=u, group="iceberg") for u in uris]
        session.add_all(models)
        session.flush()
        session.add_all([AssetActive(name=u, uri=u) for u in uris])
        for i, m in enumerate(models):
            values = {
                # Evaluated after the synthetic cache's sync time, so the runtime state is the newer.
                "amoro.evaluation": {
                    "kind": "minor" if i % 3 == 0 else None,
                    "health_score": 50 + i % 50,
                    "evaluated_ms": 1_800_000_000_000,
                },
                "amoro.optimized": {"last_minor_ms": 1_700_000_000_000 + i},
                "amoro.history": history,
            }
            session.add_all(
                [AssetStateStoreModel(asset_id=m.id, key=k, value=json.dumps(v)) for k, v in values.items()]
            )
    try:
        yield uris
    finally:
        with create_session() as session:
            ids = [m.id for m in models]
            session.execute(delete(AssetStateStoreModel).where(AssetStateStoreModel.asset_id.in_(ids)))
            session.execute(delete(AssetActive).where(AssetActive.uri.in_(uris)))
            session.execute(delete(AssetModel).where(AssetModel.id.in_(ids)))


def test_list_of_1000_tables_with_runtime_state_under_2s(
    client: Any, auth: dict[str, str], ui_env: Path, registered_assets: list[str]
) -> None:
    write_synthetic_cache(ui_env, "synthetic", 1)
    assert client.get("/amoro/", headers=auth).status_code == 200  # warm-up, as above
    write_synthetic_cache(ui_env, "synthetic", N)
    r, took = _timed_get(client, "/amoro/api/v1/tables", auth)
    assert r.status_code == 200
    rows = {t["identifier"]: t for t in r.json()["tables"]}
    assert len(rows) == N
    # The runtime state wins over the cache for last optimized time and pending kind.
    assert rows["ns3.t0003"]["last_optimized"] == 1_700_000_000_003
    assert rows["ns3.t0003"]["pending_kind"] == "minor"
    assert rows["ns3.t0003"]["health_score"] == 53
    r, page = _timed_get(client, "/amoro/", auth)
    assert r.status_code == 200
    print(f"\n{N} tables with runtime state: API {took:.3f}s, page {page:.3f}s")
    assert took < LIMIT_S, f"{N} tables with runtime state took {took:.2f}s"
    assert page < LIMIT_S, f"{N} tables with runtime state took {page:.2f}s"


def test_light_runtime_listing_agrees_with_the_runtime_reader(
    ui_env: Path, registered_assets: list[str]
) -> None:
    from airflow_provider_amoro.runtime.reader import list_table_runtimes
    from airflow_provider_amoro.ui.sources import list_runtimes_light

    light = list_runtimes_light()
    full = {(rt.conn_id, rt.table): rt for rt in list_table_runtimes()}
    assert set(light) == set(full) and len(light) >= N
    for key, rt in full.items():
        got = light[key]
        assert got["status"] == rt.status, key
        assert got["pending"] == rt.pending, key
        assert (got["last_minor_ms"], got["last_major_ms"], got["last_full_ms"]) == (
            rt.last_minor_ms,
            rt.last_major_ms,
            rt.last_full_ms,
        ), key
