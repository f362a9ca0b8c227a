"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``).

Each list below has its own section; add entries with small edits.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_amoro import __version__

#: The ``amoro`` connection type with its form (``conn-fields``, ``ui-field-behaviour``).
CONNECTION_TYPES: list[dict[str, Any]] = [
    {
        "connection-type": "amoro",
        "hook-class-name": "airflow_provider_amoro.hooks.catalog.AmoroCatalogHook",
        "hook-name": "Apache Iceberg catalog (Amoro)",
        "conn-fields": {
            "catalog_type": {
                "label": "Catalog type",
                "description": "pyiceberg catalog implementation; 'embedded' is the local demo "
                "lakehouse (SQLite under $AIRFLOW_HOME/amoro)",
                "schema": {
                    "type": "string",
                    "enum": ["sql", "rest", "hive", "glue", "embedded"],
                    "default": "sql",
                },
            },
            "catalog_name": {
                "label": "Catalog name",
                "description": "The catalog's name. A SQL catalog keeps its tables under this "
                "name (pyiceberg's own configuration usually calls it 'default'); "
                "empty: the connection id",
                "schema": {"type": ["string", "null"]},
            },
            "uri": {
                "label": "Catalog URI",
                "description": "SQLAlchemy URL (sql), HTTP(S) endpoint (rest) or thrift URI (hive)",
                "schema": {"type": ["string", "null"]},
            },
            "warehouse": {
                "label": "Warehouse",
                "description": "Warehouse location, e.g. s3://bucket/warehouse or file:///data/warehouse",
                "schema": {"type": ["string", "null"]},
            },
            "properties": {
                "label": "Catalog properties (JSON)",
                "description": "Further pyiceberg catalog properties, e.g. "
                '{"s3.endpoint": "http://minio:9000", "s3.region": "us-east-1"}',
                "schema": {"type": ["string", "null"], "format": "json"},
            },
            "timeout": {
                "label": "Timeout (seconds)",
                "description": "Connect and read timeout of catalog and storage calls (default 30)",
                "schema": {"type": ["number", "null"]},
            },
            "credential_refresh": {
                "label": "Storage credential refresh (seconds)",
                "description": "REST catalogs vending storage credentials: renew a loaded "
                "table's credentials this often (default 900)",
                "schema": {"type": ["number", "null"]},
            },
        },
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port", "extra"],
            "relabeling": {
                "host": "Catalog URI (if not set above)",
                "login": "Client id / access key (optional)",
                "password": "Secret, credential or token (optional)",
            },
            "placeholders": {
                "uri": "postgresql+psycopg2://user@host:5432/catalog",
                "catalog_name": "default",
                "warehouse": "s3://bucket/warehouse",
            },
        },
    }
]


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata; it validates against Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-amoro",
        "name": "Amoro (Apache Iceberg self-optimizing)",
        "description": "Apache Amoro-style self-optimizing and maintenance of Apache Iceberg tables, "
        "with Apache Airflow as the management service.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Apache Iceberg (Amoro)",
                "external-doc-url": "https://iceberg.apache.org/",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Apache Iceberg (Amoro)",
                "python-modules": ["airflow_provider_amoro.hooks.catalog"],
            }
        ],
        # operators-section
        "operators": [
            {
                "integration-name": "Apache Iceberg (Amoro)",
                "python-modules": [
                    "airflow_provider_amoro.operators.base",
                    "airflow_provider_amoro.operators.optimizing",
                    "airflow_provider_amoro.operators.maintenance",
                ],
            }
        ],
        # sensors-section
        "sensors": [
            {
                "integration-name": "Apache Iceberg (Amoro)",
                "python-modules": ["airflow_provider_amoro.sensors.table"],
            }
        ],
        # triggers-section
        "triggers": [
            {
                "integration-name": "Apache Iceberg (Amoro)",
                "python-modules": ["airflow_provider_amoro.triggers.table_change"],
            }
        ],
        # plugins-section
        "plugins": [
            {
                "name": "amoro_lakehouse",
                "plugin-class": "airflow_provider_amoro.ui.plugin.AmoroLakehousePlugin",
            }
        ],
        # asset-uris-section
        "asset-uris": [
            {
                "schemes": ["iceberg"],
                "handler": "airflow_provider_amoro.assets.sanitize_uri",
                "factory": "airflow_provider_amoro.assets.create_asset",
            }
        ],
        "connection-types": CONNECTION_TYPES,
    }
