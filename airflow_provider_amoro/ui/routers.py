"""The Lakehouse app's routes: one :class:`fastapi.APIRouter` per resource.

- :data:`catalogs` and :data:`tables`: the catalogs and the managed tables list (from the cache);
- :data:`table`: one table's details, files, snapshots and history (from the table's metadata);
- :data:`optimizing`: its optimizing processes and their tasks (from Airflow's runtime state);
- :data:`maintenance`: its maintenance runs;
- :data:`pages`: the two HTML pages.

Every endpoint but the OpenAPI document runs in :func:`~airflow_provider_amoro.ui.web.catalog_calls`
(:func:`~airflow_provider_amoro.ui.web.offloaded`), never in the api-server's shared threads. The
JSON routers carry the :data:`~airflow_provider_amoro.ui.web.API_PREFIX` themselves, so
:func:`~airflow_provider_amoro.ui.app.create_app` mounts each at the app's root.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse

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
from airflow_provider_amoro.ui.web import (
    API_PREFIX,
    ApiUser,
    PageUser,
    links,
    offloaded,
    render,
    table_or_404,
)

TABLE_PATH = f"{API_PREFIX}/tables/{{conn_id}}/{{identifier}}"
"""One table's API resources hang under this path."""

StatusFilter = Annotated[str | None, Query(alias="status")]
Limit = Annotated[int, Query(ge=1, le=100_000)]

# ------------------------------------------------------------------------------ catalogs, tables

catalogs = APIRouter(prefix=API_PREFIX, tags=["catalogs"])
"""``/api/v1/catalogs`` (and the OpenAPI document)."""


@catalogs.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, user: ApiUser) -> JSONResponse:
    """The app's OpenAPI schema, behind authentication."""
    return JSONResponse(request.app.openapi())


@catalogs.get("/catalogs", response_model=list[Catalog])
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


tables = APIRouter(prefix=API_PREFIX, tags=["tables"])
"""``/api/v1/tables``: the managed tables list."""


@tables.get("/tables", response_model=TableList)
@offloaded
def api_tables(
    user: ApiUser,
    q: str | None = None,
    conn_id: str | None = None,
    namespace: str | None = None,
    status_: StatusFilter = None,
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


# ------------------------------------------------------------------------------------ one table

table = APIRouter(prefix=TABLE_PATH, tags=["table"])
"""``/api/v1/tables/{conn_id}/{identifier}/...``: details, files, snapshots, history."""


@table.get("/details", response_model=TableDetails, response_model_by_alias=True)
@offloaded
def api_details(user: ApiUser, conn_id: str, identifier: str, evaluate: bool = True) -> TableDetails:
    """Schema, partition spec, sort order, properties (Amoro's with effective values), evaluation."""
    table_or_404(conn_id, identifier)
    return data.table_details(conn_id, identifier, evaluate=evaluate)


@table.get("/files", response_model=TableFilesView)
@offloaded
def api_files(
    user: ApiUser,
    conn_id: str,
    identifier: str,
    with_files: bool = False,
    file_limit: Limit = 1000,
    partition: str | None = None,
) -> TableFilesView:
    """Live files by partition, Amoro file classes and a file-size histogram.

    ``with_files=true`` lists the files too; ``partition=region=eu`` lists only that partition's
    (Amoro: ``/partitions/{partition}/files``).
    """
    table_or_404(conn_id, identifier)
    return data.table_files(
        conn_id, identifier, with_files=with_files, file_limit=file_limit, partition=partition
    )


@table.get("/snapshots", response_model=list[SnapshotView])
@offloaded
def api_snapshots(user: ApiUser, conn_id: str, identifier: str, limit: Limit = 500) -> list[SnapshotView]:
    """Snapshots, newest first, with operation, producer and files/records added and removed."""
    table_or_404(conn_id, identifier)
    return data.table_snapshots(conn_id, identifier, limit=limit)


@table.get("/snapshots/{snapshot_id}/files", response_model=SnapshotFiles)
@offloaded
def api_snapshot_files(
    user: ApiUser, conn_id: str, identifier: str, snapshot_id: int, limit: Limit = 1000
) -> SnapshotFiles:
    """Files one snapshot added and removed (Amoro: ``/snapshots/{snapshotId}/detail``)."""
    table_or_404(conn_id, identifier)
    result = data.snapshot_files(conn_id, identifier, snapshot_id, limit=limit)
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no snapshot {snapshot_id} in {identifier}")
    return result


@table.get("/history", response_model=TableHistory)
@offloaded
def api_history(user: ApiUser, conn_id: str, identifier: str) -> TableHistory:
    """File count and average file size after each snapshot (the chart's data)."""
    table_or_404(conn_id, identifier)
    return data.table_history(conn_id, identifier)


# ------------------------------------------------------------------------------------ optimizing

optimizing = APIRouter(prefix=f"{TABLE_PATH}/optimizing-processes", tags=["optimizing"])
"""``.../optimizing-processes``: processes and their tasks, from Airflow's runtime state."""


@optimizing.get("", response_model=OptimizingProcesses)
@offloaded
def api_processes(
    user: ApiUser, conn_id: str, identifier: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> OptimizingProcesses:
    """Optimizing processes, newest first (Amoro: ``/optimizing-processes``)."""
    return data.optimizing_processes(conn_id, identifier, limit=limit, with_tasks=False)


@optimizing.get("/{process_id:path}/tasks", response_model=list[OptimizingTaskView])
@offloaded
def api_tasks(user: ApiUser, conn_id: str, identifier: str, process_id: str) -> list[OptimizingTaskView]:
    """Tasks of one optimizing process (Amoro: ``/optimizing-processes/{processId}/tasks``)."""
    tasks = data.optimizing_tasks(conn_id, identifier, process_id)
    if tasks is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no optimizing process {process_id!r}")
    return tasks


# ----------------------------------------------------------------------------------- maintenance

maintenance = APIRouter(prefix=TABLE_PATH, tags=["table"])
"""``.../maintenance``: the last run of each maintenance action."""


@maintenance.get("/maintenance", response_model=MaintenanceInfo)
@offloaded
def api_maintenance(user: ApiUser, conn_id: str, identifier: str) -> MaintenanceInfo:
    """Last run of each maintenance action (expiry, orphans, dangling deletes, data expiry, tags)."""
    table_or_404(conn_id, identifier)
    loaded = sources.load_table(conn_id, identifier)
    props = {str(k): str(v) for k, v in loaded.properties.items()}
    return data.maintenance_info(
        conn_id, identifier, {**props, **sources.factory_overrides(conn_id, identifier, props)}
    )


# ----------------------------------------------------------------------------------------- pages

pages = APIRouter(include_in_schema=False)
"""The HTML pages: ``/`` (the tables) and ``/tables/{conn_id}/{identifier}`` (one table)."""


def _user_name(user: object) -> str:
    get_name = getattr(user, "get_name", None)
    return str(get_name()) if callable(get_name) else ""


@pages.get("/", response_class=HTMLResponse)
@offloaded
def page_tables(
    request: Request,
    user: PageUser,
    q: str | None = None,
    conn_id: str | None = None,
    namespace: str | None = None,
    status_: StatusFilter = None,
    sort: str = "identifier",
    order: str = "asc",
) -> HTMLResponse:
    """The tables list page."""
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
    return render(
        "tables.html",
        links=links(request),
        result=result,
        statuses=sorted({t.status for t in result.tables}),
        filters={
            "q": q or "",
            "conn_id": conn_id or "",
            "namespace": namespace or "",
            "status": status_ or "",
        },
        sort=sort,
        order=order,
        user=_user_name(user),
    )


@pages.get("/tables/{conn_id}/{identifier}", response_class=HTMLResponse)
@offloaded
def page_table(
    request: Request, user: PageUser, conn_id: str, identifier: str, tab: str = "details"
) -> HTMLResponse:
    """One table's page: details, files, snapshots, optimizing and maintenance tabs."""
    table_or_404(conn_id, identifier)
    details = data.table_details(conn_id, identifier)
    props = {p.name: p.effective for p in details.properties if p.effective is not None}
    files = data.table_files(conn_id, identifier)
    return render(
        "table.html",
        links=links(request),
        conn_id=conn_id,
        identifier=identifier,
        d=details,
        s=details.summary,
        files=files,
        snapshots=data.table_snapshots(conn_id, identifier, limit=200),
        processes=data.optimizing_processes(conn_id, identifier, limit=50),
        maintenance=data.maintenance_info(conn_id, identifier, props),
        maintenance_labels={a.name: a.label for a in MAINTENANCE_ACTIONS},
        chart=charts.history_chart(data.table_history(conn_id, identifier)),
        histogram_chart=charts.histogram_chart(files.histogram),
        tab=tab,
        user=_user_name(user),
    )


ALL = (catalogs, tables, table, optimizing, maintenance, pages)
"""Every router, in the order the app includes them."""
