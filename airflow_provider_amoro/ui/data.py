"""The Lakehouse UI's data layer: builds the API models from the cache, the tables and the runtime.

No FastAPI here: the JSON API and the HTML pages both call these functions, so a page and its
JSON twin always show the same numbers.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_amoro.dag_factory.cache import CachedTable
from airflow_provider_amoro.properties import (
    DEFAULT_CONN_ID,
    GC_ENABLED,
    GROUP,
    MAINTENANCE_ACTIONS,
    SNAPSHOT_PRODUCER,
    MaintenanceAction,
)
from airflow_provider_amoro.ui import sources
from airflow_provider_amoro.ui.models import (
    EvaluationView,
    FileEntry,
    HistogramBin,
    HistoryPoint,
    MaintenanceInfo,
    MaintenanceRunView,
    OptimizingProcesses,
    OptimizingProcessView,
    OptimizingTaskView,
    PartitionField,
    PartitionFilesView,
    PropertyValue,
    SchemaField,
    SnapshotFiles,
    SnapshotView,
    SortField,
    TableDetails,
    TableFilesView,
    TableHistory,
    TableList,
    TableSummary,
)
from airflow_provider_amoro.ui.sources import ListedTable, attr

if TYPE_CHECKING:
    from airflow_provider_amoro.optimizing.config import OptimizingConfig

SORTABLE = (
    "conn_id",
    "catalog",
    "namespace",
    "table",
    "identifier",
    "format",
    "status",
    "health_score",
    "data_files",
    "delete_files",
    "records",
    "total_size",
    "avg_file_size",
    "pending_kind",
    "last_optimized",
    "optimizer_group",
)


def _opt_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None


def _reason_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        texts = [str(v) for v in value if v]
        return "; ".join(texts) if texts else None
    return str(value) or None


@dataclass
class _RowState:
    """The state columns of a list row: from the cache, then overlaid with the runtime state."""

    status: str
    kind: Any = None
    reason: str | None = None
    pending: bool | None = None
    health: int | None = None
    last_optimized: int | None = None
    failures: int | None = None
    last_failure: str | None = None
    next_attempt: int | None = None
    stale: bool = False


def _cache_state(cached: CachedTable) -> _RowState:
    pending = cached.pending
    return _RowState(
        status="PENDING" if pending is True else "IDLE" if pending is False else "UNKNOWN",
        reason="the catalog sync's evaluation found work" if pending is True else None,
        pending=pending,
        health=cached.health,
    )


def _overlay_runtime(row: _RowState, entry: ListedTable, runtime: Any) -> None:
    """The runtime state wins for status, last optimized time and the pending optimizing, except that
    a catalog-sync evaluation newer than the runtime's last evaluation and commit decides IDLE/PENDING."""
    failure = attr(runtime, "failure")
    if isinstance(failure, Mapping) and failure.get("count"):
        row.failures = _opt_int(failure.get("count"))
        row.last_failure = f"{failure.get('task_id')}: {failure.get('reason')}"
        row.next_attempt = _opt_int(failure.get("next_attempt_ms"))
    rt_status = str(attr(runtime, "status") or row.status)
    times = [
        _opt_int(attr(runtime, k))
        for k in ("last_minor_ms", "last_major_ms", "last_full_ms", "last_commit_ms")
    ]
    known = [t for t in times if t]
    if known:
        row.last_optimized = max(known)
    rt_pending = attr(runtime, "pending")
    rt_eval: Mapping[str, Any] = rt_pending if isinstance(rt_pending, Mapping) else {}
    rt_seen = max([_opt_int(rt_eval.get("evaluated_ms")) or 0, *(t or 0 for t in times)])
    cache_ms = entry.synced_ms
    cache_is_newer = isinstance(row.pending, bool) and cache_ms is not None and cache_ms > rt_seen
    if not (rt_status in ("IDLE", "PENDING") and cache_is_newer):
        # Unless the catalog sync evaluated the table after the last evaluation and commit the
        # runtime state knows of (e.g. someone wrote to it since): then its verdict is the newer one.
        row.status = rt_status
        if rt_eval:
            if "kind" in rt_eval:
                row.kind = rt_eval.get("kind")
                row.reason = _reason_text(rt_eval.get("reasons") or rt_eval.get("reason"))
            if rt_eval.get("health_score") is not None:
                row.health = _opt_int(rt_eval.get("health_score"))
        if row.status == "IDLE":  # committed since the last evaluation, or nothing to do
            row.kind, row.reason, row.pending = None, None, False
        elif row.status == "PENDING" and not row.kind:
            # PENDING because a planned process did not commit (failed, or its run died)
            process = attr(runtime, "current_process") or attr(runtime, "last_process")
            kind = attr(process, "kind") if process is not None else None
            row.kind = kind or "optimizing"
            row.reason = row.reason or "a planned process did not commit; the next run plans again"
    synced = entry.summarized_ms or cache_ms
    row.stale = bool(row.last_optimized and synced and row.last_optimized > synced)


def summary_from_entry(entry: ListedTable, runtime: Any = None) -> TableSummary:
    """One list row from a cached (or live-listed) table, overlaid with its runtime state when known.

    The runtime state wins for status, last optimized time and the pending optimizing (it is
    newer than the cache); the cache gives the file statistics, in the catalog sync's snapshot
    summary keys (``total-data-files``, ``total-files-size``, …).
    """
    conn_id, cached = entry.conn_id, entry.table
    identifier = cached.identifier
    namespace, _, table = identifier.rpartition(".")
    totals = cached.summary
    data_files = _opt_int(totals.get("total-data-files"))
    delete_files = _opt_int(totals.get("total-delete-files"))
    total_size = _opt_int(totals.get("total-files-size"))
    files = (data_files or 0) + (delete_files or 0)
    row = _cache_state(cached)
    if runtime is not None:
        _overlay_runtime(row, entry, runtime)
    return TableSummary(
        conn_id=conn_id,
        catalog=conn_id,
        namespace=namespace,
        table=table,
        identifier=identifier,
        format=entry.format,
        status=row.status,
        health_score=row.health,
        data_files=data_files,
        delete_files=delete_files,
        position_delete_files=None,
        equality_delete_files=None,
        records=_opt_int(totals.get("total-records")),
        total_size=total_size,
        avg_file_size=total_size // files if total_size is not None and files else None,
        pending_kind=str(row.kind) if row.kind else None,
        pending_reason=row.reason if row.kind or row.pending is True else None,
        last_optimized=row.last_optimized,
        optimizer_group=cached.properties.get(GROUP) or (None if cached.error else "default"),
        cost=cached.cost,
        error=cached.error,
        snapshot_id=_opt_int(totals.get("snapshot_id")),
        summarized_at=entry.summarized_ms,
        dag_id=sources.table_dag_id(conn_id, identifier),
        failures=row.failures,
        last_failure=row.last_failure,
        next_attempt=row.next_attempt,
        stale=row.stale,
        managed=sources.is_managed(conn_id, identifier),
    )


def all_summaries() -> tuple[list[TableSummary], str, int | None]:
    """Every known table: ``(summaries, source, cache_updated_ms)``; source ``cache`` or ``catalog``."""
    cached = sources.read_cache()
    runtimes = sources.list_runtimes()
    if cached is not None:
        entries, source, updated = cached.entries, "cache", cached.updated_ms
    else:
        conn_ids = {DEFAULT_CONN_ID}
        conn_ids.update(c for c, _ in runtimes)
        entries, source, updated = sources.live_listing(sorted(conn_ids)), "catalog", None
    return (
        [summary_from_entry(e, runtimes.get((e.conn_id, e.identifier))) for e in entries],
        source,
        updated,
    )


def _matches(
    s: TableSummary, q: str | None, conn_id: str | None, namespace: str | None, status: str | None
) -> bool:
    if conn_id and s.conn_id != conn_id:
        return False
    if namespace and s.namespace != namespace:
        return False
    if status and s.status.upper() != status.upper():
        return False
    if q:
        text = " ".join(
            (s.conn_id, s.catalog, s.identifier, s.status, s.pending_kind or "", s.optimizer_group or "")
        )
        return q.lower() in text.lower()
    return True


def list_tables(
    *,
    q: str | None = None,
    conn_id: str | None = None,
    namespace: str | None = None,
    status: str | None = None,
    sort: str = "identifier",
    order: str = "asc",
    limit: int | None = None,
    offset: int = 0,
) -> TableList:
    """Filter, sort and page the tables list.

    Args:
        q: case-insensitive substring of connection, catalog, identifier, status, kind or group.
        conn_id: only this connection.
        namespace: only this namespace.
        status: only this status.
        sort: a field of :class:`TableSummary` (see :data:`SORTABLE`).
        order: ``asc`` or ``desc``; missing values sort last either way.
        limit: page size (None: all).
        offset: page start.
    """
    if sort not in SORTABLE:
        raise ValueError(f"cannot sort by {sort!r}; use one of {', '.join(SORTABLE)}")
    summaries, source, updated = all_summaries()
    rows = [s for s in summaries if _matches(s, q, conn_id, namespace, status)]
    present = [s for s in rows if getattr(s, sort) is not None]
    missing = [s for s in rows if getattr(s, sort) is None]
    present.sort(key=lambda s: (getattr(s, sort), s.conn_id, s.identifier), reverse=order == "desc")
    missing.sort(key=lambda s: (s.conn_id, s.identifier))
    ordered = present + missing
    page = ordered[offset : offset + limit] if limit is not None else ordered[offset:]
    notes = sources.live_notes() if source == "catalog" else []
    return TableList(total=len(rows), tables=page, source=source, cache_updated_at=updated, notes=notes)


def find_summary(conn_id: str, identifier: str) -> TableSummary | None:
    """The list row of one table (from the cache), None when the cache does not know it."""
    for s in all_summaries()[0]:
        if s.conn_id == conn_id and s.identifier == identifier:
            return s
    return None


# ------------------------------------------------------------------------------------- details


def amoro_property_defaults() -> list[tuple[str, str | None, str]]:
    """``(name, default, group)`` of every Amoro property the provider honours, in documentation order.

    Read from the engine's configuration modules (each property is a constant ``NAME`` with
    ``NAME_DEFAULT`` beside it), so the page can never disagree with what the engine uses.
    """
    import re

    out: list[tuple[str, str | None, str]] = []
    seen: set[str] = set()
    modules: list[tuple[str, Any]] = []
    from airflow_provider_amoro.optimizing import config as opt_config

    modules.append(("self-optimizing", opt_config))
    try:
        from airflow_provider_amoro.maintenance import config as mnt_config

        modules.append(("maintenance", mnt_config))
    except ImportError:  # pragma: no cover - maintenance ships with the provider
        pass
    pattern = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$")
    for group, module in modules:
        for const, value in vars(module).items():
            if not const.isupper() or const.endswith("_DEFAULT") or not isinstance(value, str):
                continue
            if not pattern.match(value) or value in seen:
                continue
            seen.add(value)
            default = getattr(module, f"{const}_DEFAULT", None)
            out.append((value, _fmt_default(default), group))
    return out


def _fmt_default(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def property_values(
    properties: Mapping[str, str], overrides: Mapping[str, str] | None = None
) -> tuple[list[PropertyValue], list[str]]:
    """Amoro properties (set or not, with default and effective value) first, then the others.

    Args:
        properties: the table's own properties.
        overrides: what the DAG factory configuration applies over them (they win, as in the DAG).

    Returns:
        The property rows and the messages of Amoro properties whose effective value is invalid.
    """
    over = dict(overrides or {})
    values: list[PropertyValue] = []
    amoro_names: set[str] = set()
    for name, default, group in amoro_property_defaults():
        amoro_names.add(name)
        value = properties.get(name)
        effective: str | None
        if name in over:
            effective, source = over[name], "factory"
        elif value is not None:
            effective, source = value, "table"
        else:
            effective, source = default, "default"
        values.append(
            PropertyValue(
                name=name,
                value=value,
                default=default,
                override=over.get(name),
                effective=effective,
                source=source,
                amoro=True,
                group=group,
            )
        )
    for name in sorted(set(properties) | set(over)):
        if name not in amoro_names:
            value = properties.get(name)
            effective = over.get(name, value)
            values.append(
                PropertyValue(
                    name=name,
                    value=value,
                    override=over.get(name),
                    effective=effective,
                    source="factory" if name in over else "table",
                )
            )
    in_force = {**properties, **over}
    errors: list[str] = []
    from airflow_provider_amoro.optimizing.config import OptimizingConfig

    try:
        OptimizingConfig.from_properties(in_force)
    except ValueError as exc:
        errors.append(str(exc))
    try:
        from airflow_provider_amoro.maintenance.config import MaintenanceConfig

        MaintenanceConfig.from_properties(in_force)
    except ImportError:  # pragma: no cover
        pass
    except ValueError as exc:
        errors.append(str(exc))
    return values, errors


def evaluate_table(
    table: Any, overrides: Mapping[str, str] | None = None, runtime: Any = None
) -> EvaluationView:
    """Run the engine's ``evaluate`` as the table's DAG would: with its overrides and last optimized times.

    Returns an :class:`EvaluationView` with ``error`` set when it cannot evaluate.
    """
    try:
        from airflow_provider_amoro.optimizing.config import OptimizingConfig
        from airflow_provider_amoro.optimizing.evaluate import evaluate
    except ImportError:
        return EvaluationView(error="the optimizing engine's evaluate() is not installed")
    try:
        config = OptimizingConfig.from_properties(
            {**{str(k): str(v) for k, v in table.properties.items()}, **(overrides or {})},
            schema=table.schema(),
        )
        result = evaluate(
            table,
            config=config,
            last_minor_ms=_opt_int(attr(runtime, "last_minor_ms")),
            last_major_ms=_opt_int(attr(runtime, "last_major_ms")),
            last_full_ms=_opt_int(attr(runtime, "last_full_ms")),
        )
    except Exception as exc:  # noqa: BLE001 - show why on the page
        return EvaluationView(error=f"{type(exc).__name__}: {exc}")
    d: dict[str, Any] = result.to_dict() if hasattr(result, "to_dict") else {}
    kind = d.get("kind", getattr(result, "kind", None))
    partitions = d.get("partitions", [])
    return EvaluationView(
        kind=str(kind) if kind else None,
        health_score=_opt_int(d.get("health_score", getattr(result, "health_score", None))),
        cost=d.get("cost", getattr(result, "cost", None)),
        reasons=[str(r) for r in d.get("reasons", getattr(result, "reasons", []) or [])],
        partitions=partitions if isinstance(partitions, list) else [],
        totals={k: v for k, v in d.items() if k.startswith("total") or k in ("totals",)},
    )


def table_details(conn_id: str, identifier: str, *, evaluate: bool = True) -> TableDetails:
    """The Details tab of one table (loads the table: one metadata read; evaluation reads manifests)."""
    from airflow_provider_amoro.formats import open_table

    table = sources.load_table(conn_id, identifier)
    fmt = open_table(table)
    schema = [
        SchemaField(id=c.field_id, name=c.name, type=c.type, required=c.required, doc=c.doc)
        for c in fmt.columns()
        if c.field_id is not None
    ]
    spec = table.spec()
    sort_order = table.sort_order()
    names = {f.id: f.name for f in schema}
    props = {str(k): str(v) for k, v in table.properties.items()}
    overrides = sources.factory_overrides(conn_id, identifier, props)
    values, errors = property_values(props, overrides)
    runtime = sources.get_runtime(conn_id, identifier)[0]
    summary = find_summary(conn_id, identifier) or summary_from_entry(
        sources.listed_table(conn_id, identifier, table), runtime
    )
    snap = fmt.current_snapshot()
    return TableDetails(
        summary=summary,
        location=fmt.location,
        format_version=int(table.metadata.format_version),
        table_uuid=str(table.metadata.table_uuid),
        current_snapshot_id=snap.snapshot_id if snap is not None else None,
        last_updated_ms=int(table.metadata.last_updated_ms),
        schema=schema,
        partition_spec=[
            PartitionField(
                field_id=f.field_id,
                source_id=f.source_id,
                source_name=names.get(f.source_id, str(f.source_id)),
                transform=str(f.transform),
                name=f.name,
            )
            for f in spec.fields
        ],
        sort_order=[
            SortField(
                source_id=f.source_id,
                source_name=names.get(f.source_id, str(f.source_id)),
                transform=str(f.transform),
                direction=str(f.direction.value if hasattr(f.direction, "value") else f.direction),
                null_order=str(f.null_order.value if hasattr(f.null_order, "value") else f.null_order),
            )
            for f in sort_order.fields
        ],
        properties=values,
        property_errors=errors,
        evaluation=evaluate_table(table, overrides, runtime) if evaluate else None,
    )


# --------------------------------------------------------------------------------------- files

MIB = 1024 * 1024


def _size_label(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v >= 10 or v.is_integer() else f"{v:.1f} {unit}"
    return f"{n} B"


def size_histogram(sizes: list[int], bins: int = 12) -> list[HistogramBin]:
    """Power-of-two bins from the smallest to the largest size (at most ``bins`` bins).

    Each bin holds the files with ``lower <= size < upper``; the first bin starts at 0.
    """
    if not sizes:
        return []
    e_lo = math.floor(math.log2(max(1, min(sizes))))
    e_hi = math.floor(math.log2(max(1, max(sizes)))) + 1
    step = max(1, math.ceil((e_hi - e_lo) / bins))
    edges = [2 ** (e_lo + k * step) for k in range(math.ceil((e_hi - e_lo) / step) + 1)]
    out = [
        HistogramBin(label=f"{_size_label(lo)}\u2013{_size_label(hi)}", lower=lo, upper=hi, count=0, bytes=0)
        for lo, hi in itertools.pairwise(edges)
    ]
    out[0].lower = 0
    out[0].label = f"<{_size_label(edges[1])}"
    for s in sizes:
        idx = min(len(out) - 1, max(0, (math.floor(math.log2(max(1, s))) - e_lo) // step))
        out[idx].count += 1
        out[idx].bytes += s
    return out


def table_files(
    conn_id: str,
    identifier: str,
    *,
    with_files: bool = False,
    file_limit: int = 1000,
    partition: str | None = None,
) -> TableFilesView:
    """The Files tab: per-partition counts and sizes, Amoro file classes and a size histogram.

    Args:
        conn_id: catalog connection id.
        identifier: ``namespace.table``.
        with_files: also list the files (data files first, then delete files).
        file_limit: at most this many files in the list.
        partition: only the files of this partition path (``region=eu``; ``""`` for unpartitioned),
            as Amoro's ``/partitions/{partition}/files``; the partitions and histogram stay whole.
    """
    from airflow_provider_amoro.optimizing.config import OptimizingConfig

    table = sources.load_table(conn_id, identifier)
    try:
        props = {str(k): str(v) for k, v in table.properties.items()}
        config = OptimizingConfig.from_properties(
            {**props, **sources.factory_overrides(conn_id, identifier, props)}
        )
    except ValueError:
        config = OptimizingConfig()
    snapshot_id, data, deletes, path_of = _live_files(table)
    partitions, classes = _partition_rollup(data, deletes, path_of, config)
    files: list[FileEntry] = []
    if with_files:
        chosen = data + deletes
        if partition is not None:
            chosen = [f for f in chosen if path_of(f["spec_id"], f["partition"]) == partition]
        files = [
            FileEntry(
                content=f["content"],
                file_path=f["path"],
                partition=path_of(f["spec_id"], f["partition"]),
                record_count=f["records"],
                file_size_in_bytes=f["size"],
                spec_id=f["spec_id"],
            )
            for f in chosen[:file_limit]
        ]
    return TableFilesView(
        snapshot_id=snapshot_id,
        partitions=partitions,
        histogram=size_histogram([f["size"] for f in data]),
        classes=classes,
        thresholds={
            "fragment_size": config.fragment_size,
            "min_target_size": config.min_target_size,
            "target_size": config.target_size,
        },
        files=files,
    )


def _partition_rollup(
    data: list[dict[str, Any]],
    deletes: list[dict[str, Any]],
    path_of: Callable[[int, list[Any]], str],
    config: OptimizingConfig,
) -> tuple[list[PartitionFilesView], dict[str, int]]:
    """Per-partition counts and sizes (sorted by spec and path) and the data files' Amoro classes."""
    by_part: dict[tuple[int, str], PartitionFilesView] = {}

    def part(spec_id: int, values: list[Any]) -> PartitionFilesView:
        path = path_of(spec_id, values)
        key = (spec_id, path)
        pf = by_part.get(key)
        if pf is None:
            pf = PartitionFilesView(
                partition=path,
                spec_id=spec_id,
                data_files=0,
                data_size=0,
                records=0,
                position_delete_files=0,
                position_delete_size=0,
                equality_delete_files=0,
                equality_delete_size=0,
                avg_data_file_size=0,
            )
            by_part[key] = pf
        return pf

    classes = {"fragment": 0, "undersized": 0, "target": 0}
    for f in data:
        pf = part(f["spec_id"], f["partition"])
        pf.data_files += 1
        pf.data_size += f["size"]
        pf.records += f["records"]
        if f["size"] <= config.fragment_size:
            classes["fragment"] += 1
        elif f["size"] <= config.min_target_size:
            classes["undersized"] += 1
        else:
            classes["target"] += 1
    for f in deletes:
        pf = part(f["spec_id"], f["partition"])
        if f["content"] == "equality_deletes":
            pf.equality_delete_files += 1
            pf.equality_delete_size += f["size"]
        else:
            pf.position_delete_files += 1
            pf.position_delete_size += f["size"]
    for pf in by_part.values():
        pf.avg_data_file_size = pf.data_size // pf.data_files if pf.data_files else 0
    return sorted(by_part.values(), key=lambda p: (p.spec_id, p.partition)), classes


def _live_files(table: Any) -> tuple[int | None, list[dict[str, Any]], list[dict[str, Any]], Any]:
    """Live files of the current snapshot via the engine's scanner (pyiceberg's inspect as a fallback)."""
    try:
        from airflow_provider_amoro.optimizing import scan
    except ImportError:  # pragma: no cover - the scanner ships with the provider
        scan = None  # type: ignore[assignment]
    if scan is not None:
        tf = scan.live_files(table)

        def conv(refs: Iterable[Any]) -> list[dict[str, Any]]:
            return [
                {
                    "content": r.content,
                    "path": r.path,
                    "size": int(r.size_bytes),
                    "records": int(r.record_count),
                    "spec_id": int(r.spec_id),
                    "partition": list(r.partition),
                }
                for r in refs
            ]

        return tf.snapshot_id, conv(tf.data_files), conv(tf.delete_files), tf.partition_path
    snap = table.current_snapshot()  # pragma: no cover
    if snap is None:  # pragma: no cover
        return None, [], [], lambda spec_id, values: ""
    rows = table.inspect.files().to_pylist()  # pragma: no cover
    data, deletes = [], []  # pragma: no cover
    for r in rows:  # pragma: no cover
        content = {0: "data", 1: "position_deletes", 2: "equality_deletes"}[int(r["content"])]
        item = {
            "content": content,
            "path": r["file_path"],
            "size": int(r["file_size_in_bytes"]),
            "records": int(r["record_count"]),
            "spec_id": int(r["spec_id"]),
            "partition": [f"{k}={v}" for k, v in (r.get("partition") or {}).items()],
        }
        (data if content == "data" else deletes).append(item)
    return snap.snapshot_id, data, deletes, lambda spec_id, values: "/".join(values)  # pragma: no cover


# ----------------------------------------------------------------------------------- snapshots


def _summary_dict(snap: Any) -> dict[str, str]:
    if snap.summary is None:
        return {}
    d = {str(k): str(v) for k, v in snap.summary.additional_properties.items()}
    op = snap.summary.operation
    d["operation"] = str(op.value if hasattr(op, "value") else op)
    return d


def _i(d: Mapping[str, str], key: str) -> int:
    try:
        return int(d.get(key, 0))
    except ValueError:
        return 0


def _snapshot_info(snap: Any, current_id: int | None) -> SnapshotView:
    d = _summary_dict(snap)
    total_data = _opt_int(d.get("total-data-files"))
    total_del = _opt_int(d.get("total-delete-files"))
    total_size = _opt_int(d.get("total-files-size"))
    files = (total_data or 0) + (total_del or 0)
    return SnapshotView(
        snapshot_id=snap.snapshot_id,
        parent_id=snap.parent_snapshot_id,
        sequence_number=snap.sequence_number,
        timestamp_ms=snap.timestamp_ms,
        operation=d.get("operation"),
        producer=d.get(SNAPSHOT_PRODUCER) or d.get("engine-name") or d.get("app-id"),
        added_data_files=_i(d, "added-data-files"),
        removed_data_files=_i(d, "deleted-data-files"),
        added_delete_files=_i(d, "added-delete-files"),
        removed_delete_files=_i(d, "removed-delete-files"),
        added_records=_i(d, "added-records"),
        removed_records=_i(d, "deleted-records"),
        added_size=_i(d, "added-files-size"),
        removed_size=_i(d, "removed-files-size"),
        total_data_files=total_data,
        total_delete_files=total_del,
        total_records=_opt_int(d.get("total-records")),
        total_size=total_size,
        avg_file_size=(total_size // files) if total_size is not None and files else None,
        current=snap.snapshot_id == current_id,
        summary=d,
    )


def table_snapshots(conn_id: str, identifier: str, *, limit: int = 500) -> list[SnapshotView]:
    """The Snapshots tab: newest first, from the table metadata (no manifest reads)."""
    table = sources.load_table(conn_id, identifier)
    snap = table.current_snapshot()
    current_id = snap.snapshot_id if snap is not None else None
    snaps = sorted(
        table.metadata.snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number or 0), reverse=True
    )
    return [_snapshot_info(s, current_id) for s in snaps[:limit]]


def snapshot_files(
    conn_id: str, identifier: str, snapshot_id: int, *, limit: int = 1000
) -> SnapshotFiles | None:
    """The data and delete files one snapshot added and removed; None for an unknown snapshot.

    Reads only the manifests that snapshot wrote (their entries with its id and status ADDED or
    DELETED), not the whole table. ``limit`` caps the listed files (added first); the counts are
    always complete.
    """
    from pyiceberg.manifest import ManifestEntryStatus

    from airflow_provider_amoro.optimizing.model import content_name, encode_partition
    from airflow_provider_amoro.optimizing.scan import partition_path

    table = sources.load_table(conn_id, identifier)
    snap = table.snapshot_by_id(snapshot_id)
    if snap is None:
        return None
    current = table.current_snapshot()
    specs = table.metadata.specs()
    schema = table.schema()
    added: list[FileEntry] = []
    removed: list[FileEntry] = []
    counts = {"added": 0, "removed": 0}
    for manifest in snap.manifests(table.io):
        if manifest.added_snapshot_id != snapshot_id:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            if entry.snapshot_id != snapshot_id:
                continue
            if entry.status == ManifestEntryStatus.ADDED:
                kind, target = "added", added
            elif entry.status == ManifestEntryStatus.DELETED:
                kind, target = "removed", removed
            else:
                continue
            counts[kind] += 1
            if len(added) + len(removed) >= limit:
                continue
            df = entry.data_file
            target.append(
                FileEntry(
                    content=content_name(df.content),
                    file_path=df.file_path,
                    # the same rendering as the Files tab's partitions
                    partition=partition_path(specs, schema, df.spec_id, encode_partition(df.partition)),
                    record_count=int(df.record_count),
                    file_size_in_bytes=int(df.file_size_in_bytes),
                    spec_id=int(df.spec_id),
                )
            )
    return SnapshotFiles(
        snapshot=_snapshot_info(snap, current.snapshot_id if current is not None else None),
        added_files=added,
        removed_files=removed,
        added_count=counts["added"],
        removed_count=counts["removed"],
        truncated=counts["added"] + counts["removed"] > len(added) + len(removed),
    )


def table_history(conn_id: str, identifier: str) -> TableHistory:
    """File count and average file size after each snapshot, oldest first (from snapshot summaries)."""
    points: list[HistoryPoint] = []
    for s in reversed(table_snapshots(conn_id, identifier, limit=10_000)):
        if s.total_data_files is None or s.total_size is None:
            continue
        data_files = s.total_data_files
        delete_files = s.total_delete_files or 0
        files = data_files + delete_files
        points.append(
            HistoryPoint(
                snapshot_id=s.snapshot_id,
                timestamp_ms=s.timestamp_ms,
                files=files,
                data_files=data_files,
                delete_files=delete_files,
                avg_file_size=s.total_size // files if files else 0,
                operation=s.operation,
            )
        )
    return TableHistory(points=points)


# ---------------------------------------------------------------------------------- optimizing


def _process_model(p: Any, with_tasks: bool = True) -> OptimizingProcessView:
    """The view of a runtime ``ProcessRecord`` (same field names; tasks left out on request)."""
    view = OptimizingProcessView.model_validate(p, from_attributes=True)
    return view if with_tasks else view.model_copy(update={"tasks": []})


def optimizing_processes(
    conn_id: str, identifier: str, *, limit: int = 50, with_tasks: bool = True
) -> OptimizingProcesses:
    """The Optimizing tab: processes newest first, the running one included."""
    history, error = sources.get_history(conn_id, identifier, limit)
    runtime, rt_error = sources.get_runtime(conn_id, identifier)
    status = str(attr(runtime, "status") or "UNKNOWN") if runtime is not None else "UNKNOWN"
    if history is None:
        return OptimizingProcesses(available=False, status=status, processes=[], note=error or rt_error)
    processes = [_process_model(p, with_tasks) for p in history]
    current = attr(runtime, "current_process")
    if current is not None:
        cur = _process_model(current, with_tasks)
        if all(p.process_id != cur.process_id for p in processes):
            processes.insert(0, cur)
    return OptimizingProcesses(available=True, status=status, processes=processes[:limit], note=None)


def optimizing_tasks(conn_id: str, identifier: str, process_id: str) -> list[OptimizingTaskView] | None:
    """Tasks of one process (None when the process is unknown)."""
    result = optimizing_processes(conn_id, identifier, limit=1000, with_tasks=True)
    for p in result.processes:
        if p.process_id == process_id:
            return p.tasks
    return None


def maintenance_info(
    conn_id: str, identifier: str, properties: Mapping[str, str] | None = None
) -> MaintenanceInfo:
    """The Maintenance tab: last run of each action, with whether the table enables it."""
    runtime, error = sources.get_runtime(conn_id, identifier)
    props = dict(properties or {})
    defaults = {name: default for name, default, _ in amoro_property_defaults()}

    def enabled(spec: MaintenanceAction) -> bool:
        prop = spec.enabled_property
        raw = props.get(prop, defaults.get(prop))
        gc = props.get(GC_ENABLED, defaults.get(GC_ENABLED, "true"))
        on = str(raw).strip().lower() == "true"
        if spec.gc_controlled and str(gc).strip().lower() == "false":
            return False
        return on

    runs_by_action: dict[str, Any] = {}
    if runtime is not None:
        m = attr(runtime, "maintenance")
        if isinstance(m, Mapping):
            runs_by_action = dict(m)
    runs: list[MaintenanceRunView] = []
    listed: set[str] = set()
    for spec in MAINTENANCE_ACTIONS:
        runs.append(_maintenance_run(spec.name, runs_by_action.get(spec.name), enabled(spec)))
        listed.add(spec.name)
    for action, run in sorted(runs_by_action.items()):
        if action not in listed:
            runs.append(_maintenance_run(action, run, None))
    return MaintenanceInfo(available=runtime is not None, runs=runs, note=error)


def _maintenance_run(action: str, run: Any, enabled: bool | None) -> MaintenanceRunView:
    if run is None:
        return MaintenanceRunView(action=action, enabled=enabled, status="NEVER")
    success = attr(run, "success")
    result = attr(run, "result")
    return MaintenanceRunView(
        action=action,
        enabled=enabled,
        last_run=sources.to_ms(attr(run, "time_ms")),
        status="SUCCESS" if success else "FAILED" if success is not None else None,
        result=dict(result) if isinstance(result, Mapping) else {},
    )


def now_ms() -> int:
    """Current time in epoch milliseconds."""
    return int(time.time() * 1000)
