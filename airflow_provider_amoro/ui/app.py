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
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import html
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from airflow_provider_amoro.properties import MAINTENANCE_ACTIONS
from airflow_provider_amoro.ui import charts, data, sources
from airflow_provider_amoro.ui.models import (
    Catalog,
    MaintenanceInfo,
    OptimizingProcesses,
    OptimizingTaskView,
    SnapshotFiles,
    SnapshotView,
    TableDetails,
    TableFilesView,
    TableHistory,
    TableList,
)

log = logging.getLogger(__name__)

URL_PREFIX = "/amoro"
"""Where the api-server mounts the app."""

API_PREFIX = "/api/v1"

DASH = "\u2013"
"""Shown for unknown values."""

_bearer = HTTPBearer(auto_error=False)


class LoginRequired(Exception):
    """Raised by page dependencies when the request carries no valid Airflow session."""


def _authorize(user: Any) -> None:
    """403 unless the auth manager lets ``user`` read assets (every managed table is an asset)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AssetDetails

    if not get_auth_manager().is_authorized_asset(method="GET", details=AssetDetails(), user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden: reading assets is not allowed")


async def api_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Any:
    """API dependency: the authenticated Airflow user (401/403 otherwise)."""
    from airflow.api_fastapi.core_api.security import get_user

    user = await get_user(request, None, credentials)
    _authorize(user)
    return user


async def page_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Any:
    """Page dependency: the authenticated user, or a redirect to Airflow's login page."""
    from airflow.api_fastapi.core_api.security import get_user

    try:
        user = await get_user(request, None, credentials)
    except HTTPException as exc:
        if exc.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
            raise LoginRequired() from None
        raise
    _authorize(user)
    return user


ApiUser = Annotated[Any, Depends(api_user)]
PageUser = Annotated[Any, Depends(page_user)]


def _login_redirect(request: Request, exc: Exception) -> Response:
    from airflow.api_fastapi.app import get_auth_manager

    next_url = str(request.url)
    try:
        login = get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # noqa: BLE001 - no auth manager: plain 401
        return HTMLResponse("<h1>401 Not authenticated</h1>", status_code=status.HTTP_401_UNAUTHORIZED)
    return RedirectResponse(login, status_code=status.HTTP_303_SEE_OTHER)


# ------------------------------------------------------------------------------------ templating


def _env() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("airflow_provider_amoro.ui", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = fmt_size
    env.filters["ms"] = fmt_ms
    env.filters["duration"] = fmt_duration
    env.filters["num"] = fmt_num
    env.filters["q"] = lambda s: quote(str(s), safe="")
    return env


_ENV: Any = None


def render(name: str, **context: Any) -> HTMLResponse:
    """Render a template of ``ui/templates`` to an HTML response."""
    global _ENV
    if _ENV is None:
        _ENV = _env()
    return HTMLResponse(_ENV.get_template(name).render(**context))


def fmt_size(n: Any) -> str:
    """Bytes in binary units (``12.5 MiB``); a dash for None."""
    if n is None:
        return DASH
    n = int(n)
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def fmt_ms(ms: Any) -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM:SS`` UTC; a dash for None."""
    if not ms:
        return DASH
    return dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(ms: Any) -> str:
    """Milliseconds as ``1h 2m``, ``3m 4s``, ``5.6s``; a dash for None."""
    if ms is None:
        return DASH
    s = int(ms) / 1000
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {sec}s"
    h, m = divmod(m, 60)
    return f"{h}h {m}m"


def fmt_num(n: Any) -> str:
    """Thousands separators; a dash for None."""
    if n is None:
        return DASH
    return f"{int(n):,}"


def _links(request: Request) -> dict[str, str]:
    """``base`` (this app's mount path) and ``airflow`` (the api-server root) for building links."""
    base = str(request.scope.get("root_path", "")).rstrip("/")
    airflow_root = base[: -len(URL_PREFIX)] if base.endswith(URL_PREFIX) else base
    return {"base": base, "airflow": airflow_root}


def _table_or_404(conn_id: str, identifier: str) -> None:
    """Load the table: 400 for a malformed identifier, 404 for an unknown connection or table,
    502 for a catalog that fails (its message redacted)."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    from airflow_provider_amoro.hooks.catalog import AmoroCatalogError, redact_uri, split_identifier

    try:
        split_identifier(identifier)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    try:
        sources.load_table(conn_id, identifier)
    except (NoSuchTableError, NoSuchNamespaceError) as exc:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"table {identifier!r} not found in {conn_id!r}"
        ) from exc
    except AmoroCatalogError as exc:
        if "is not defined" in str(exc):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown connection {conn_id!r}") from None
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            f"cannot load {identifier!r} from {conn_id!r}: {redact_uri(str(exc))}",
        ) from None
    except ValueError as exc:  # pyiceberg's own identifier checks
        raise HTTPException(status.HTTP_400_BAD_REQUEST, redact_uri(str(exc))) from None
    except Exception as exc:  # noqa: BLE001 - re-raised without the driver's exception (it may show secrets)
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            f"cannot load {identifier!r} from {conn_id!r}: {redact_uri(str(exc)) or type(exc).__name__}",
        ) from None


# ------------------------------------------------------------------------ catalog calls off the loop

CATALOG_TIMEOUT_ENV = "AMORO_UI_TIMEOUT_S"
CATALOG_WORKERS_ENV = "AMORO_UI_WORKERS"


class _CatalogCalls:
    """Where the Lakehouse endpoints run: a small thread pool of its own, bounded and timed out.

    Airflow's api-server runs its own synchronous endpoints in AnyIO's shared worker threads (40);
    endpoints that wait on a stalled catalog must not take those, or Airflow's own API and login
    page stop answering. Every Lakehouse endpoint runs here instead: at most ``workers`` at once,
    at most ``4 * workers`` waiting (more get 503 at once), each answered 504 after ``timeout_s``
    (its thread ends when the hook's own connect/read timeout fires).
    """

    def __init__(self) -> None:
        self.workers = max(1, int(os.environ.get(CATALOG_WORKERS_ENV, "8")))
        self.timeout_s = float(os.environ.get(CATALOG_TIMEOUT_ENV, "60"))
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="amoro-lakehouse")
        self.slots = threading.BoundedSemaphore(self.workers * 4)

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.slots.acquire(blocking=False):
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the Lakehouse is busy: {self.workers * 4} requests wait on catalogs already; retry later",
            )

        def call() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                self.slots.release()

        future = asyncio.get_running_loop().run_in_executor(self.pool, call)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=self.timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(
                status.HTTP_504_GATEWAY_TIMEOUT,
                f"the catalog did not answer within {self.timeout_s:g} s (set {CATALOG_TIMEOUT_ENV} "
                "for the Lakehouse, the connection's 'timeout' for the catalog)",
            ) from None


_calls: _CatalogCalls | None = None


def catalog_calls() -> _CatalogCalls:
    """The process's :class:`_CatalogCalls` (created on first use, so tests can set the env vars)."""
    global _calls
    if _calls is None:
        _calls = _CatalogCalls()
    return _calls


def reset_catalog_calls() -> None:
    """Forget the pool (tests change its settings); running calls finish in the old one."""
    global _calls
    _calls = None


def offloaded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a synchronous endpoint into an async one that runs in :func:`catalog_calls`."""

    @functools.wraps(fn)
    async def endpoint(*args: Any, **kwargs: Any) -> Any:
        return await catalog_calls().run(fn, *args, **kwargs)

    return endpoint


# ------------------------------------------------------------------------------------------- app


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
        openapi_url=None,  # served below, behind authentication
    )
    global _ENV
    if _ENV is None:  # compile the templates once, at start-up rather than on the first request
        _ENV = _env()
        for name in ("tables.html", "table.html"):
            _ENV.get_template(name)
    static_dir = resources.files("airflow_provider_amoro.ui") / "static"
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")
    app.add_exception_handler(LoginRequired, _login_redirect)

    # ------------------------------------------------------------------------------- JSON API

    @app.get(f"{API_PREFIX}/openapi.json", include_in_schema=False)
    def openapi(user: ApiUser) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get(f"{API_PREFIX}/catalogs", response_model=list[Catalog], tags=["catalogs"])
    @offloaded
    def api_catalogs(user: ApiUser) -> list[Catalog]:
        """Catalogs (Airflow connections) with managed tables, their namespaces and table counts."""
        by_conn: dict[str, tuple[str, set[str], int]] = {}
        for s in data.all_summaries()[0]:
            name, nss, n = by_conn.get(s.conn_id, (s.catalog, set(), 0))
            nss.add(s.namespace)
            by_conn[s.conn_id] = (name, nss, n + 1)
        return [
            Catalog(conn_id=c, catalog=name, namespaces=sorted(nss), tables=n)
            for c, (name, nss, n) in sorted(by_conn.items())
        ]

    @app.get(f"{API_PREFIX}/tables", response_model=TableList, tags=["tables"])
    @offloaded
    def api_tables(
        user: ApiUser,
        q: str | None = None,
        conn_id: str | None = None,
        namespace: str | None = None,
        status_: Annotated[str | None, Query(alias="status")] = None,
        sort: str = "identifier",
        order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
        limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> TableList:
        """Managed tables with their summary, from the catalog-sync cache (Amoro: ``/tables``)."""
        try:
            return data.list_tables(
                q=q,
                conn_id=conn_id,
                namespace=namespace,
                status=status_,
                sort=sort,
                order=order,
                limit=limit,
                offset=offset,
            )
        except ValueError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc

    table_path = f"{API_PREFIX}/tables/{{conn_id}}/{{identifier}}"

    @app.get(
        f"{table_path}/details", response_model=TableDetails, response_model_by_alias=True, tags=["table"]
    )
    @offloaded
    def api_details(user: ApiUser, conn_id: str, identifier: str, evaluate: bool = True) -> TableDetails:
        """Schema, partition spec, sort order, properties (Amoro's with effective values), evaluation."""
        _table_or_404(conn_id, identifier)
        return data.table_details(conn_id, identifier, evaluate=evaluate)

    @app.get(f"{table_path}/files", response_model=TableFilesView, tags=["table"])
    @offloaded
    def api_files(
        user: ApiUser,
        conn_id: str,
        identifier: str,
        with_files: bool = False,
        file_limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
        partition: str | None = None,
    ) -> TableFilesView:
        """Live files by partition, Amoro file classes and a file-size histogram.

        ``with_files=true`` lists the files too; ``partition=region=eu`` lists only that partition's
        (Amoro: ``/partitions/{partition}/files``).
        """
        _table_or_404(conn_id, identifier)
        return data.table_files(
            conn_id, identifier, with_files=with_files, file_limit=file_limit, partition=partition
        )

    @app.get(f"{table_path}/snapshots", response_model=list[SnapshotView], tags=["table"])
    @offloaded
    def api_snapshots(
        user: ApiUser, conn_id: str, identifier: str, limit: Annotated[int, Query(ge=1, le=100_000)] = 500
    ) -> list[SnapshotView]:
        """Snapshots, newest first, with operation, producer and files/records added and removed."""
        _table_or_404(conn_id, identifier)
        return data.table_snapshots(conn_id, identifier, limit=limit)

    @app.get(f"{table_path}/snapshots/{{snapshot_id}}/files", response_model=SnapshotFiles, tags=["table"])
    @offloaded
    def api_snapshot_files(
        user: ApiUser,
        conn_id: str,
        identifier: str,
        snapshot_id: int,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> SnapshotFiles:
        """Files one snapshot added and removed (Amoro: ``/snapshots/{snapshotId}/detail``)."""
        _table_or_404(conn_id, identifier)
        result = data.snapshot_files(conn_id, identifier, snapshot_id, limit=limit)
        if result is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no snapshot {snapshot_id} in {identifier}")
        return result

    @app.get(f"{table_path}/history", response_model=TableHistory, tags=["table"])
    @offloaded
    def api_history(user: ApiUser, conn_id: str, identifier: str) -> TableHistory:
        """File count and average file size after each snapshot (the chart's data)."""
        _table_or_404(conn_id, identifier)
        return data.table_history(conn_id, identifier)

    @app.get(f"{table_path}/optimizing-processes", response_model=OptimizingProcesses, tags=["optimizing"])
    @offloaded
    def api_processes(
        user: ApiUser, conn_id: str, identifier: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> OptimizingProcesses:
        """Optimizing processes, newest first (Amoro: ``/optimizing-processes``)."""
        return data.optimizing_processes(conn_id, identifier, limit=limit, with_tasks=False)

    @app.get(
        f"{table_path}/optimizing-processes/{{process_id:path}}/tasks",
        response_model=list[OptimizingTaskView],
        tags=["optimizing"],
    )
    @offloaded
    def api_tasks(user: ApiUser, conn_id: str, identifier: str, process_id: str) -> list[OptimizingTaskView]:
        """Tasks of one optimizing process (Amoro: ``/optimizing-processes/{processId}/tasks``)."""
        tasks = data.optimizing_tasks(conn_id, identifier, process_id)
        if tasks is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no optimizing process {process_id!r}")
        return tasks

    @app.get(f"{table_path}/maintenance", response_model=MaintenanceInfo, tags=["table"])
    @offloaded
    def api_maintenance(user: ApiUser, conn_id: str, identifier: str) -> MaintenanceInfo:
        """Last run of each maintenance action (expiry, orphans, dangling deletes, data expiry, tags)."""
        _table_or_404(conn_id, identifier)
        table = sources.load_table(conn_id, identifier)
        props = {str(k): str(v) for k, v in table.properties.items()}
        return data.maintenance_info(
            conn_id, identifier, {**props, **sources.factory_overrides(conn_id, identifier, props)}
        )

    # ---------------------------------------------------------------------------------- pages

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    @offloaded
    def page_tables(
        request: Request,
        user: PageUser,
        q: str | None = None,
        conn_id: str | None = None,
        namespace: str | None = None,
        status_: Annotated[str | None, Query(alias="status")] = None,
        sort: str = "identifier",
        order: str = "asc",
    ) -> HTMLResponse:
        try:
            result = data.list_tables(
                q=q,
                conn_id=conn_id,
                namespace=namespace,
                status=status_,
                sort=sort,
                order="desc" if order == "desc" else "asc",
            )
        except ValueError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
        statuses = sorted({t.status for t in result.tables})
        return render(
            "tables.html",
            links=_links(request),
            result=result,
            statuses=statuses,
            filters={
                "q": q or "",
                "conn_id": conn_id or "",
                "namespace": namespace or "",
                "status": status_ or "",
            },
            sort=sort,
            order=order,
            user=getattr(user, "get_name", lambda: "")(),
        )

    @app.get("/tables/{conn_id}/{identifier}", response_class=HTMLResponse, include_in_schema=False)
    @offloaded
    def page_table(
        request: Request, user: PageUser, conn_id: str, identifier: str, tab: str = "details"
    ) -> HTMLResponse:
        _table_or_404(conn_id, identifier)
        details = data.table_details(conn_id, identifier)
        props = {p.name: p.effective for p in details.properties if p.effective is not None}
        files = data.table_files(conn_id, identifier)
        snapshots = data.table_snapshots(conn_id, identifier, limit=200)
        history = data.table_history(conn_id, identifier)
        processes = data.optimizing_processes(conn_id, identifier, limit=50)
        maintenance = data.maintenance_info(conn_id, identifier, props)
        return render(
            "table.html",
            links=_links(request),
            conn_id=conn_id,
            identifier=identifier,
            d=details,
            s=details.summary,
            files=files,
            snapshots=snapshots,
            processes=processes,
            maintenance=maintenance,
            maintenance_labels={a.name: a.label for a in MAINTENANCE_ACTIONS},
            chart=charts.history_chart(history),
            histogram_chart=charts.histogram_chart(files.histogram),
            tab=tab,
            user=getattr(user, "get_name", lambda: "")(),
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        from airflow_provider_amoro.hooks.catalog import redact_uri

        path = request.url.path
        detail = redact_uri(exc.detail) if isinstance(exc.detail, str) else exc.detail
        if API_PREFIX in path or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)
        body = f"<h1>{exc.status_code}</h1><p>{html.escape(str(detail))}</p>"
        return HTMLResponse(body, status_code=exc.status_code)

    return app
