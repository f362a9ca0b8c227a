"""Airflow triggers (async, for deferrable sensors and ``AssetWatcher``) watching Iceberg tables."""
