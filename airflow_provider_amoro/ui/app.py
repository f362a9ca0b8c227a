"""The Lakehouse FastAPI app, mounted by Airflow's api-server under ``/amoro``.

Two faces over one data layer (:mod:`airflow_provider_amoro.ui.data`):

- **Pages** (server-rendered HTML, a little vanilla JS, an inline SVG chart; no CDN, nothing
  fetched from the network): ``/amoro/`` lists the tables, ``/amoro/tables/<conn>/<ns.table>``
  shows one table with tabs. Airflow's UI shows them in its "Lakehouse" navigation entry.
- **A read-only JSON API** under ``/amoro/api/v1``, mirroring Apache Amoro's dashboard endpoints
  (catalogs, tables, details, files, snapshots, optimizing processes and their tasks), with its
  OpenAPI schema at ``/amoro/api/v1/openapi.json``.

Everything except the static assets is behind Airflow's authentication: the api-server's own
``get_user`` dependency (a JWT as ``Authorization: Bearer`` header or the UI's ``_token`` cookie),
then the auth manager's asset read permission (managed tables are Airflow assets). The API answers
401/403; a page redirects to the auth manager's login page.

The routes live in :mod:`airflow_provider_amoro.ui.routers` (one router per resource), the shared
plumbing (authentication, templates, the catalog-call pool) in :mod:`airflow_provider_amoro.ui.web`.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.staticfiles import StaticFiles

from airflow_provider_amoro.ui import routers
from airflow_provider_amoro.ui.web import (
    API_PREFIX,
    CATALOG_TIMEOUT_ENV,
    CATALOG_WORKERS_ENV,
    URL_PREFIX,
    LoginRequired,
    catalog_calls,
    compile_templates,
    fmt_duration,
    fmt_ms,
    fmt_num,
    fmt_size,
    http_error,
    login_redirect,
    render,
    reset_catalog_calls,
)

__all__ = [
    "API_PREFIX",
    "CATALOG_TIMEOUT_ENV",
    "CATALOG_WORKERS_ENV",
    "URL_PREFIX",
    "catalog_calls",
    "create_app",
    "fmt_duration",
    "fmt_ms",
    "fmt_num",
    "fmt_size",
    "render",
    "reset_catalog_calls",
]


def create_app() -> FastAPI:
    """Build the Lakehouse app (pages, JSON API, static assets)."""
    app = FastAPI(
        title="Amoro Lakehouse API",
        description="Read-only view of the managed Apache Iceberg tables: health, files, snapshots, "
        "optimizing processes and maintenance, as Apache Amoro's dashboard shows them. "
        "Authenticate as for Airflow's REST API (JWT bearer token from ``POST /auth/token``).",
        version="1",
        docs_url=None,  # Swagger UI would load its assets from a CDN
        redoc_url=None,
        openapi_url=None,  # served by the catalogs router, behind authentication
    )
    compile_templates()
    static_dir = resources.files("airflow_provider_amoro.ui") / "static"
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")
    app.add_exception_handler(LoginRequired, login_redirect)
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    for router in routers.ALL:
        app.include_router(router)
    return app
