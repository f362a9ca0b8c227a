"""Provider metadata validates against Airflow's own schemas and is discovered by Airflow."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema

from airflow_provider_amoro.get_provider_info import get_provider_info

AIRFLOW_DIR = Path(os.path.dirname(airflow.__file__))


def test_validates_against_airflow_schema() -> None:
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_connection_fields_validate_against_provider_yaml_schema() -> None:
    schema = json.loads((AIRFLOW_DIR / "provider.yaml.schema.json").read_text())
    sub = schema["properties"]["connection-types"]
    jsonschema.validate(get_provider_info()["connection-types"], sub)


def test_every_listed_class_imports() -> None:
    info = get_provider_info()
    for conn in info["connection-types"]:
        module, _, cls = conn["hook-class-name"].rpartition(".")
        assert hasattr(importlib.import_module(module), cls)
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(section, []):
            for module in entry.get("python-modules", []):
                importlib.import_module(module)
    for plugin in info.get("plugins", []):
        module, _, cls = plugin["plugin-class"].rpartition(".")
        assert hasattr(importlib.import_module(module), cls)


def test_airflow_discovers_the_provider(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    airflow_cli = Path(sys.executable).parent / "airflow"
    out = subprocess.run(
        [str(airflow_cli), "providers", "get", "airflow-provider-amoro", "--full", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "airflow-provider-amoro" in out
    assert "AmoroCatalogHook" in out
    hooks = subprocess.run(
        [str(airflow_cli), "providers", "hooks", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert any(h.get("connection_type") == "amoro" for h in json.loads(hooks))
