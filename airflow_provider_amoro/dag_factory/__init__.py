"""The DAG factory: one YAML file → one self-optimizing DAG per Iceberg table, plus discovery.

Drop ``dags/amoro_dags.py`` into the DAGs folder; it calls :func:`generate_dags`::

    from airflow_provider_amoro.dag_factory import generate_dags

    globals().update(generate_dags())  # reads $AMORO_DAGS_CONFIG or amoro.yaml beside the file

Parsing reads the configuration and the discovery cache only (no catalog, no database); the
``amoro__catalog_sync`` DAG fills the cache. Reference: ``docs/dag_factory.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_amoro.dag_factory.config import (
    CACHE_DIR_ENV_VAR,
    CATALOG_SYNC_DAG_ID,
    CONFIG_ENV_VAR,
    FactoryConfig,
    TableSettings,
    load_config,
    loads,
)
from airflow_provider_amoro.dag_factory.errors import ConfigError

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = [
    "CACHE_DIR_ENV_VAR",
    "CATALOG_SYNC_DAG_ID",
    "CONFIG_ENV_VAR",
    "ConfigError",
    "FactoryConfig",
    "TableSettings",
    "build_dags",
    "config_path",
    "generate_dags",
    "load_config",
    "loads",
]


def config_path(default: str | os.PathLike[str] | None = None) -> Path:
    """The configuration file: ``$AMORO_DAGS_CONFIG``, else ``default``.

    Raises:
        ConfigError: neither is given.
    """
    env = os.environ.get(CONFIG_ENV_VAR)
    if env:
        return Path(env).expanduser()
    if default is None:
        raise ConfigError([], f"no configuration file: set {CONFIG_ENV_VAR}")
    return Path(default)


def build_dags(config: FactoryConfig, **kwargs: Any) -> dict[str, DAG]:
    """Build every DAG of ``config`` (see :func:`.builder.build_dags`)."""
    from airflow_provider_amoro.dag_factory.builder import build_dags as _build

    return _build(config, **kwargs)


def generate_dags(
    default_config: str | os.PathLike[str] | None = None, *, shard: int | None = None
) -> dict[str, DAG]:
    """Load the configuration and build all DAGs; the entry point of ``dags/amoro_dags.py``.

    Args:
        default_config: the file used when ``$AMORO_DAGS_CONFIG`` is not set.
        shard: with ``shards: N`` in the configuration, this DAG file's index (0 to N-1); each of the
            N files builds its share of the tables (see ``docs/dag_factory.md``, "Many tables").

    Returns:
        DAGs by dag id; put them into the DAG file's globals.

    Raises:
        ConfigError: the configuration is invalid (Airflow shows it as the file's import error).
    """
    return build_dags(load_config(config_path(default_config)), shard=shard)
