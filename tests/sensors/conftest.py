"""Airflow fixtures shared with other test packages (see tests/airflow_fixtures.py)."""

from airflow_fixtures import airflow_db, amoro_conn  # noqa: F401
