"""Reproducible benchmarks of airflow-provider-amoro (run with ``make bench``; not part of ``make test``)."""
