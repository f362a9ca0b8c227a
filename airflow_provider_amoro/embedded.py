"""The embedded default lakehouse: a pyiceberg SQL catalog on SQLite plus a local warehouse.

It lives under ``$AIRFLOW_HOME/amoro/`` (``~/airflow/amoro`` when ``AIRFLOW_HOME`` is unset) and is
what :class:`~airflow_provider_amoro.hooks.catalog.AmoroCatalogHook` falls back to when no
``amoro_default`` connection is configured. This module imports no Airflow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

EMBEDDED_CATALOG_NAME = "default"


def airflow_home() -> Path:
    """Return ``$AIRFLOW_HOME`` or Airflow's own default, ``~/airflow``."""
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow").expanduser().resolve()


def embedded_root() -> Path:
    """Directory that holds the embedded catalog database and warehouse."""
    return airflow_home() / "amoro"


def embedded_catalog_properties(root: Path | None = None) -> dict[str, str]:
    """pyiceberg SQL-catalog properties of the embedded lakehouse under ``root``."""
    base = (root or embedded_root()).resolve()
    return {
        "type": "sql",
        "uri": f"sqlite:///{base / 'catalog.db'}",
        "warehouse": (base / "warehouse").as_uri(),
    }


def load_embedded_catalog(root: Path | None = None) -> Any:
    """Create (if needed) and load the embedded catalog; returns a pyiceberg ``SqlCatalog``."""
    from pyiceberg.catalog.sql import SqlCatalog

    base = (root or embedded_root()).resolve()
    (base / "warehouse").mkdir(parents=True, exist_ok=True)
    props = embedded_catalog_properties(base)
    props.pop("type")
    return SqlCatalog(EMBEDDED_CATALOG_NAME, **props)
