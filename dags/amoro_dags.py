"""Amoro self-optimizing DAGs for Apache Iceberg tables: drop this file into Airflow's DAGs folder.

It reads ``amoro.yaml`` next to it (or the file named by ``$AMORO_DAGS_CONFIG``) and generates
``amoro__catalog_sync`` plus one ``amoro__<conn>__<namespace>__<table>`` DAG per managed table.
Parsing never contacts a catalog: tables come from the cache the sync DAG writes. A mistake in the
YAML shows up as this file's import error, naming the key and the problem.
See docs/dag_factory.md.
"""

from __future__ import annotations

from pathlib import Path

from airflow_provider_amoro.dag_factory import generate_dags

globals().update(generate_dags(Path(__file__).with_name("amoro.yaml")))
