"""Airflow sensors waiting on Iceberg tables."""
