"""Airflow operators: thin wrappers over the engine (one table each, see ``operators.base``)."""
