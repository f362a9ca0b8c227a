"""The Airflow plugin that adds the "Lakehouse" page to Airflow's UI.

Airflow 3.3 loads it in one of two ways, and exactly one applies in any configuration:

- From the provider's metadata (``get_provider_info()["plugins"]``): Airflow's plugins manager
  reads provider plugins only when ``[core] lazy_discover_providers = False``.
- From the ``airflow.plugins`` entry point (:mod:`airflow_provider_amoro.ui.entrypoint`), which
  resolves to this class only when provider discovery is lazy (Airflow's default), so the plugin
  is never registered twice (a second registration would show up as a plugin import error).

What it adds to the api-server:

- ``fastapi_apps``: the Lakehouse app (pages and JSON API) mounted at ``/amoro``.
- ``external_views``: a "Lakehouse" entry in the navigation bar that shows ``/amoro/`` inside
  Airflow's UI at ``/plugin/lakehouse``.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_amoro.ui.app import URL_PREFIX, create_app

PLUGIN_NAME = "amoro_lakehouse"
URL_ROUTE = "lakehouse"


class AmoroLakehousePlugin(AirflowPlugin):
    """Registers the Lakehouse FastAPI app and its navigation entry."""

    name = PLUGIN_NAME
    fastapi_apps: list[Any] = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Amoro Lakehouse"},
    ]
    external_views: list[Any] = [
        {
            "name": "Lakehouse",
            # Relative to Airflow's <base href>, so a [api] base_url with a path keeps working.
            "href": URL_PREFIX.lstrip("/") + "/",
            "icon": URL_PREFIX.lstrip("/") + "/static/lakehouse.svg",
            "url_route": URL_ROUTE,
            "destination": "nav",
            "nav_top_level": True,
        }
    ]
