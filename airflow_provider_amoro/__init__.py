"""Apache Amoro-style self-optimizing and maintenance for Apache Iceberg, on Apache Airflow."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
