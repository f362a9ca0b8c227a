"""The "Lakehouse" page in Airflow's UI: an Airflow 3 plugin (FastAPI app + navigation entry).

See :mod:`airflow_provider_amoro.ui.plugin` for how Airflow finds it and
:mod:`airflow_provider_amoro.ui.app` for the pages and the JSON API. Docs: ``docs/ui.md``.
"""
