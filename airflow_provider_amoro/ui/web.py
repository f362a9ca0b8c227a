"""The Lakehouse app's shared plumbing: authentication, templating, formatting, catalog calls.

The routers of :mod:`airflow_provider_amoro.ui.routers` and the app factory of
:mod:`airflow_provider_amoro.ui.app` use these; no route is defined here.
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
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from airflow_provider_amoro.ui import sources

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


def login_redirect(request: Request, exc: Exception) -> Response:
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


def compile_templates() -> None:
    """Compile the templates once, at start-up rather than on the first request."""
    global _ENV
    if _ENV is None:
        _ENV = _env()
        for name in ("tables.html", "table.html"):
            _ENV.get_template(name)


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


def links(request: Request) -> dict[str, str]:
    """``base`` (this app's mount path) and ``airflow`` (the api-server root) for building links."""
    base = str(request.scope.get("root_path", "")).rstrip("/")
    airflow_root = base[: -len(URL_PREFIX)] if base.endswith(URL_PREFIX) else base
    return {"base": base, "airflow": airflow_root}


def table_or_404(conn_id: str, identifier: str) -> None:
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


async def http_error(request: Request, exc: HTTPException) -> Response:
    """JSON ``{"detail": ...}`` for the API and non-HTML clients, a small HTML page for browsers;
    the detail's URIs redacted either way."""
    from airflow_provider_amoro.hooks.catalog import redact_uri

    detail = redact_uri(exc.detail) if isinstance(exc.detail, str) else exc.detail
    if API_PREFIX in request.url.path or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)
    body = f"<h1>{exc.status_code}</h1><p>{html.escape(str(detail))}</p>"
    return HTMLResponse(body, status_code=exc.status_code)
