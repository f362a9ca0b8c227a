"""The provider registers the Lakehouse plugin exactly once, however Airflow discovers providers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROBE = """
import json
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
apps, _ = plugins_manager.get_fastapi_plugins()
views, _ = plugins_manager._get_ui_plugins()
print(json.dumps({
    "names": [p.name for p in plugins],
    "errors": errors,
    "apps": [{"name": a["name"], "url_prefix": a["url_prefix"]} for a in apps],
    "views": views,
}))
"""


@pytest.mark.parametrize("lazy", ["True", "False"])
def test_plugin_is_registered_once(airflow_db: Path, lazy: str) -> None:
    env = {**os.environ, "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": lazy}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["names"].count("amoro_lakehouse") == 1, out["names"]
    assert out["errors"] == {}
    assert {"name": "Amoro Lakehouse", "url_prefix": "/amoro"} in out["apps"]
    (view,) = [v for v in out["views"] if v["name"] == "Lakehouse"]
    assert view["url_route"] == "lakehouse" and view["destination"] == "nav"
    assert not view["href"].startswith("/"), "relative to Airflow's <base href>"


def test_provider_info_lists_the_plugin() -> None:
    from airflow_provider_amoro.get_provider_info import get_provider_info

    assert {
        "name": "amoro_lakehouse",
        "plugin-class": "airflow_provider_amoro.ui.plugin.AmoroLakehousePlugin",
    } in get_provider_info()["plugins"]


def test_api_server_lists_the_nav_entry(client: Any, auth: dict[str, str]) -> None:
    r = client.get("/api/v2/plugins", headers=auth)
    assert r.status_code == 200
    (plugin,) = [p for p in r.json()["plugins"] if p["name"] == "amoro_lakehouse"]
    assert plugin["external_views"][0]["name"] == "Lakehouse"
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/amoro"
