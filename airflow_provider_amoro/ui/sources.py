"""Where the Lakehouse UI reads from: the catalog-sync cache, the catalogs, and the runtime state.

The UI only reads. Three sources, each optional so the page works on a fresh install:

- **The catalog-sync cache** (``$AIRFLOW_HOME/amoro/cache/*.json``), written by the
  ``amoro__catalog_sync`` DAG: the discovered tables with a summary of each (file counts, sizes,
  health, pending optimizing). The tables list is built from it alone, so 1,000 tables cost one
  JSON parse (memoised on the file's mtime), never 1,000 table scans.
- **The catalogs** (``AmoroCatalogHook``): a table page loads its one table. When there is no cache
  yet, the list falls back to listing the catalog's tables (names only) and summarising each from
  its current snapshot summary (metadata only, no manifest reads), memoised for a short while.
- **The runtime state** (:mod:`airflow_provider_amoro.runtime`): status, processes, maintenance.

Every adapter tolerates a missing module (``ImportError``): parts of the provider are built in
parallel and the UI must render with whatever is installed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_amoro.dag_factory.cache import (
    CACHE_FILE_PREFIX,
    CACHE_FILE_SUFFIX,
    CACHE_VERSION,
    CachedTable,
    CatalogCache,
    amoro_properties,
    cache_conn_id,
    parse_cache,
)
from airflow_provider_amoro.embedded import airflow_home
from airflow_provider_amoro.properties import DEFAULT_CONN_ID, GROUP, GROUP_DEFAULT

log = logging.getLogger(__name__)


#: Seconds a live (no-cache) listing is reused.
LIVE_LISTING_TTL_S = 30.0


def cache_dir() -> Path | str:
    """Location of the catalog-sync table list, as the DAG factory configures it (a path or URL).

    The factory's configuration file (``$AMORO_DAGS_CONFIG``) may name a ``cache_dir``; else
    ``$AMORO_CACHE_DIR``; else ``$AIRFLOW_HOME/amoro/cache``.
    """
    try:
        from airflow_provider_amoro.dag_factory.config import CONFIG_ENV_VAR, default_cache_dir, load_config
    except ImportError:  # pragma: no cover - the factory ships with the provider
        return airflow_home() / "amoro" / "cache"
    config_path = os.environ.get(CONFIG_ENV_VAR)
    if config_path:
        try:
            mtime = os.stat(config_path).st_mtime
        except OSError:
            mtime = None
        key = (config_path, mtime)
        cached = _config_cache_dir.get(key)
        if cached is None:
            try:
                cached = load_config(config_path).cache_dir
            except Exception as exc:  # noqa: BLE001 - a broken config must not break the page
                log.warning("cannot read the DAG factory configuration %s: %s", config_path, exc)
                cached = default_cache_dir()
            _config_cache_dir.clear()
            _config_cache_dir[key] = cached
        return cached
    return default_cache_dir()


_config_cache_dir: dict[tuple[str, float | None], Path | str] = {}
_factory_config: dict[tuple[str, float | None], Any] = {}


def factory_config() -> Any:
    """The DAG factory's configuration (``$AMORO_DAGS_CONFIG``), None when unset or unreadable."""
    try:
        from airflow_provider_amoro.dag_factory.config import CONFIG_ENV_VAR, load_config
    except ImportError:  # pragma: no cover - the factory ships with the provider
        return None
    path = os.environ.get(CONFIG_ENV_VAR)
    if not path:
        return None
    try:
        key = (path, os.stat(path).st_mtime)
    except OSError:
        return None
    if key not in _factory_config:
        try:
            config = load_config(path)
        except Exception as exc:  # noqa: BLE001 - a broken config must not break the page
            log.warning("cannot read the DAG factory configuration %s: %s", path, exc)
            config = None
        _factory_config.clear()
        _factory_config[key] = config
    return _factory_config[key]


def factory_overrides(conn_id: str, identifier: str, table_properties: Mapping[str, str]) -> dict[str, str]:
    """Properties the table's generated DAG applies over the table's own (its ``property_overrides``)."""
    config = factory_config()
    if config is None or conn_id not in getattr(config, "catalogs", {}):
        return {}
    try:
        settings = config.resolve(conn_id, identifier, table_properties=dict(table_properties))
    except Exception as exc:  # noqa: BLE001 - e.g. an unknown optimizer group: show the table's own
        log.warning("cannot resolve DAG factory settings of %s.%s: %s", conn_id, identifier, exc)
        return {}
    return {str(k): str(v) for k, v in dict(settings.property_overrides).items()}


def is_managed(conn_id: str, identifier: str) -> bool | None:
    """Whether the DAG factory configuration selects the table (so it has a DAG); None when unknown."""
    config = factory_config()
    if config is None:
        return None
    catalog = getattr(config, "catalogs", {}).get(conn_id)
    return bool(catalog is not None and catalog.selects(identifier))


def table_dag_id(conn_id: str, identifier: str) -> str:
    """The generated DAG id of a table (``amoro__<conn>__<namespace>__<table>``)."""
    try:
        from airflow_provider_amoro.runtime.state import table_dag_id as runtime_dag_id

        return runtime_dag_id(conn_id, identifier)
    except ImportError:  # pragma: no cover - runtime package always ships with the UI
        import re

        namespace, _, name = identifier.rpartition(".")
        return re.sub(r"[^A-Za-z0-9_.-]", "_", f"amoro__{conn_id}__{namespace}__{name}")


# --------------------------------------------------------------------------------------- catalogs

_catalog_lock = threading.Lock()
_catalogs: dict[str, Any] = {}


def get_catalog(conn_id: str) -> Any:
    """The pyiceberg catalog of connection ``conn_id`` (loaded once per process).

    Uses :class:`~airflow_provider_amoro.hooks.catalog.AmoroCatalogHook`: a connection that does
    not exist raises :class:`~airflow_provider_amoro.hooks.catalog.AmoroCatalogError` naming it.
    """
    with _catalog_lock:
        cat = _catalogs.get(conn_id)
        if cat is not None:
            return cat
    from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

    cat = AmoroCatalogHook(amoro_conn_id=conn_id).get_catalog()
    with _catalog_lock:
        _catalogs[conn_id] = cat
    return cat


def reset_catalogs() -> None:
    """Forget loaded catalogs (tests; after connection changes)."""
    with _catalog_lock:
        _catalogs.clear()
    with _live_lock:
        _live.clear()
        _live_notes.clear()


def load_table(conn_id: str, identifier: str) -> Any:
    """Load ``namespace.table`` from the catalog of ``conn_id``; raises pyiceberg's NoSuchTableError."""
    return get_catalog(conn_id).load_table(identifier)


def catalog_name(conn_id: str) -> str:
    """The catalog's own name (the embedded lakehouse's is ``default``)."""
    try:
        return str(get_catalog(conn_id).name)
    except Exception:  # noqa: BLE001 - a name is cosmetic; never fail a page for it
        return conn_id


# ----------------------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class ListedTable:
    """One row's source: a table as the catalog sync cached it, or as the live listing read it.

    Attributes:
        conn_id: the connection.
        table: the cached facts (the live listing fills the same type from the table's metadata).
        synced_ms: when the catalog sync wrote the cache, None for the live listing.
        summarized_ms: when the live listing read the table, None for the cache.
        format: the table format's label (``iceberg``, ``iceberg v2``).
    """

    conn_id: str
    table: CachedTable
    synced_ms: int | None = None
    summarized_ms: int | None = None
    format: str = "iceberg"

    @property
    def identifier(self) -> str:
        """``namespace.table``."""
        return self.table.identifier


@dataclass
class CachedTables:
    """The tables of the catalog-sync cache, with the newest sync time and the files read."""

    entries: list[ListedTable]
    updated_ms: int | None
    files: list[str]


_cache_lock = threading.Lock()
_cache_memo: dict[str, tuple[float, int, list[ListedTable], int | None]] = {}


def _listed(parsed: CatalogCache) -> tuple[list[ListedTable], int | None]:
    synced = int(parsed.synced_at.timestamp() * 1000) if parsed.synced_at is not None else None
    entries = [ListedTable(parsed.conn_id, t, synced_ms=synced) for t in parsed.tables.values()]
    return entries, synced


def _to_ms(value: Any) -> int | None:
    """Epoch milliseconds from ms/seconds numbers or ISO-8601 strings."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        return int(v * 1000) if v < 1e11 else int(v)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return _to_ms(float(text))
        except ValueError:
            pass
        import datetime as dt

        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        return int(parsed.timestamp() * 1000)
    return None


def _merged(entries: list[ListedTable], newest: int | None, files: list[str]) -> CachedTables:
    """One entry per table (a later file wins) and the newest sync time."""
    dedup = {(e.conn_id, e.identifier): e for e in entries}
    return CachedTables(entries=list(dedup.values()), updated_ms=newest, files=files)


def _read_remote_cache(url: str) -> CachedTables | None:
    """Read the table lists under a URL (object storage) with fsspec; None when there is none."""
    try:
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(url)
        names = sorted(str(p) for p in fs.glob(f"{root.rstrip('/')}/{CACHE_FILE_PREFIX}*{CACHE_FILE_SUFFIX}"))
    except Exception as exc:  # noqa: BLE001 - an unreachable store must not break the page
        log.warning("cannot list the catalog-sync table lists at %s: %s", url, exc)
        return None
    entries: list[ListedTable] = []
    newest: int | None = None
    for name in names:
        conn_id = cache_conn_id(name)
        try:
            parsed = parse_cache(fs.cat_file(name), conn_id or "")
        except Exception as exc:  # noqa: BLE001 - one unreadable file is skipped
            log.warning("cannot read catalog-sync table list %s: %s", name, exc)
            continue
        if conn_id is None or parsed is None:
            log.warning("skipping %s: not a catalog-sync table list of version %d", name, CACHE_VERSION)
            continue
        file_entries, updated = _listed(parsed)
        entries.extend(file_entries)
        newest = updated if newest is None else max(newest, updated or 0)
    if not entries and not names:
        return None
    return _merged(entries, newest, names)


def read_cache(directory: Path | str | None = None) -> CachedTables | None:
    """Read every table list (``catalog__<conn_id>.json``) of the catalog-sync cache; None when there
    is none.

    Each file is read through :mod:`airflow_provider_amoro.dag_factory.cache` (its
    :class:`~airflow_provider_amoro.dag_factory.cache.CachedTable` entries) and parsed again only
    when its mtime or size changes. A file that is not a valid table list (e.g. caught mid-write by
    a non-atomic writer) keeps its previous parse. A URL location (``s3://…``) is read with fsspec.
    """
    location = directory or cache_dir()
    if isinstance(location, str) and "://" in location and not location.startswith("file://"):
        return _read_remote_cache(location)
    base = Path(
        location[len("file://") :]
        if isinstance(location, str) and location.startswith("file://")
        else location
    )
    try:
        paths = sorted(
            (p, conn_id)
            for p in base.glob(f"{CACHE_FILE_PREFIX}*{CACHE_FILE_SUFFIX}")
            if p.is_file() and (conn_id := cache_conn_id(p.name)) is not None
        )
    except OSError:
        return None
    entries: list[ListedTable] = []
    newest: int | None = None
    used: list[str] = []
    for path, conn_id in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        key = str(path)
        with _cache_lock:
            memo = _cache_memo.get(key)
        if memo is not None and memo[0] == st.st_mtime and memo[1] == st.st_size:
            file_entries, updated = memo[2], memo[3]
        else:
            try:
                parsed = parse_cache(path.read_bytes(), conn_id)
            except OSError as exc:
                log.warning("cannot read catalog-sync cache %s: %s", path, exc)
                parsed = None
            if parsed is None:
                log.warning("catalog-sync cache %s is not a table list of version %d", path, CACHE_VERSION)
                if memo is None:
                    continue
                file_entries, updated = memo[2], memo[3]
            else:
                file_entries, updated = _listed(parsed)
                if updated is None:
                    updated = int(st.st_mtime * 1000)
                with _cache_lock:
                    _cache_memo[key] = (st.st_mtime, st.st_size, file_entries, updated)
        entries.extend(file_entries)
        used.append(key)
        newest = updated if newest is None else max(newest, updated or 0)
    if not used:
        return None
    return _merged(entries, newest, used)


# ------------------------------------------------------------------------------- live fallback

_live_lock = threading.Lock()
_live: dict[str, tuple[float, list[ListedTable]]] = {}


def live_listing(conn_ids: Iterable[str] = (DEFAULT_CONN_ID,)) -> list[ListedTable]:
    """Tables of the given catalogs with summaries from their current snapshot summary.

    Only used when no catalog-sync cache exists. Reads table metadata (one JSON file per table),
    never manifests; memoised for :data:`LIVE_LISTING_TTL_S` seconds.
    """
    out: list[ListedTable] = []
    for conn_id in conn_ids:
        now = time.monotonic()
        with _live_lock:
            memo = _live.get(conn_id)
        if memo is not None and now - memo[0] < LIVE_LISTING_TTL_S:
            out.extend(memo[1])
            continue
        entries: list[ListedTable] = []
        try:
            cat = get_catalog(conn_id)
            for ns in cat.list_namespaces():
                for ident in cat.list_tables(ns):
                    identifier = ".".join(ident)
                    try:
                        entries.append(listed_table(conn_id, identifier, cat.load_table(ident)))
                    except Exception as exc:  # noqa: BLE001 - one broken table must not hide the others
                        entries.append(ListedTable(conn_id, CachedTable(identifier, error=str(exc))))
            note = None if entries else _empty_catalog_note(conn_id)
        except Exception as exc:  # noqa: BLE001 - an unreachable catalog: an empty list with a note
            from airflow_provider_amoro.hooks.catalog import redact_uri

            note = f"cannot list the tables of connection {conn_id!r}: {redact_uri(str(exc))}"
            log.warning("%s", note)
        with _live_lock:
            _live[conn_id] = (now, entries)
            _live_notes[conn_id] = note
        out.extend(entries)
    return out


_live_notes: dict[str, str | None] = {}


def live_notes() -> list[str]:
    """Why the live listing of a catalog is empty: its error, or the catalog names that hold tables."""
    with _live_lock:
        return [n for _, n in sorted(_live_notes.items()) if n]


def _empty_catalog_note(conn_id: str) -> str | None:
    from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

    try:
        hint = AmoroCatalogHook(amoro_conn_id=conn_id).empty_catalog_hint()
    except Exception:  # noqa: BLE001 - a hint only
        return None
    return f"connection {conn_id!r}: {hint}" if hint else None


def listed_table(conn_id: str, identifier: str, table: Any) -> ListedTable:
    """A table as the live listing sees it, from metadata only: the current snapshot's totals (in the
    catalog sync's summary keys), its Amoro properties and its format."""
    from airflow_provider_amoro.formats import open_table

    fmt = open_table(table)
    totals = fmt.totals()
    summary: dict[str, Any] = {
        "snapshot_id": totals.snapshot_id,
        "total-data-files": totals.data_files,
        "total-delete-files": totals.delete_files,
        "total-records": totals.records,
        "total-files-size": totals.total_size,
    }
    props = {GROUP: GROUP_DEFAULT, **amoro_properties(fmt.properties())}
    cached = CachedTable(identifier, properties=props, summary=summary)
    return ListedTable(conn_id, cached, summarized_ms=int(time.time() * 1000), format=fmt.format_label)


# --------------------------------------------------------------------------------------- runtime


def list_runtimes() -> dict[tuple[str, str], Any]:
    """Runtime state of every managed table, by ``(conn_id, identifier)``; empty when unavailable.

    Uses :func:`list_runtimes_light`; falls back to the runtime reader's ``list_table_runtimes``
    if that fails.
    """
    try:
        return list_runtimes_light()
    except ImportError:
        return {}
    except Exception as exc:  # noqa: BLE001 - e.g. a changed state layout: use the full reader
        log.warning("light runtime listing failed (%s); using the full reader", exc)
    try:
        from airflow_provider_amoro.runtime.reader import list_table_runtimes

        runtimes = list_table_runtimes()
    except Exception as exc:  # noqa: BLE001 - no metadata DB yet, etc.: the list still renders
        log.warning("cannot read runtime state: %s", exc)
        return {}
    out: dict[tuple[str, str], Any] = {}
    for rt in runtimes or []:
        conn = _attr(rt, "conn_id")
        ident = _attr(rt, "table") or _attr(rt, "identifier")
        if conn and ident:
            out[(str(conn), str(ident))] = rt
    return out


_ACTIVE_RUN_STATES = ("queued", "running")


def list_runtimes_light() -> dict[tuple[str, str], dict[str, Any]]:
    """What the tables list needs of every table's runtime state, in three queries.

    The runtime reader's ``list_table_runtimes`` builds each table's full state (its optimizing
    history too) with a few queries per table, about 1.5 s for 1,000 tables. The list needs only
    status, last optimized times and the pending evaluation, so this reads just the small
    ``amoro.status``/``amoro.evaluation``/``amoro.optimized``/``amoro.process`` keys of all table
    assets in one query and the active DAG runs in another. A table with an active run (its DAG's,
    or the run its status hint or current process names) is then read with the reader's
    ``get_table_runtime``, which derives the live status from task states; every other table gets
    the reader's ``status_without_active_run`` (``tests/ui/test_perf.py`` checks that both agree).
    """
    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_amoro.assets import ICEBERG_SCHEME, parse_table_asset_uri
    from airflow_provider_amoro.runtime.reader import get_table_runtime, status_without_active_run
    from airflow_provider_amoro.runtime.state import (
        KEY_EVALUATION,
        KEY_FAILURE,
        KEY_OPTIMIZED,
        KEY_PROCESS,
        KEY_STATUS,
        table_dag_id,
    )

    keys = (KEY_STATUS, KEY_EVALUATION, KEY_OPTIMIZED, KEY_PROCESS, KEY_FAILURE)
    with create_session() as session:
        uris = set(
            session.scalars(
                select(AssetModel.uri).where(
                    AssetModel.uri.like(f"{ICEBERG_SCHEME}://%"), AssetModel.active.has()
                )
            ).all()
        )
        state: dict[str, dict[str, Any]] = {u: {} for u in uris}
        rows = session.execute(
            select(AssetModel.uri, AssetStateStoreModel.key, AssetStateStoreModel.value)
            .join(AssetModel, AssetModel.id == AssetStateStoreModel.asset_id)
            .where(AssetModel.uri.like(f"{ICEBERG_SCHEME}://%"), AssetStateStoreModel.key.in_(keys))
        ).all()
        for uri, key, value in rows:
            if uri in state:
                try:
                    state[uri][key] = json.loads(value)
                except (TypeError, ValueError):
                    continue
        active = {
            (r.dag_id, r.run_id)
            for r in session.execute(
                select(DagRun.dag_id, DagRun.run_id).where(DagRun.state.in_(_ACTIVE_RUN_STATES))
            ).all()
        }
    active_dags = {d for d, _ in active}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for uri, raw in state.items():
        try:
            ref = parse_table_asset_uri(uri)
        except ValueError:
            continue
        conn_id, identifier = ref.conn_id, ref.identifier
        refs = [raw.get(KEY_STATUS), raw.get(KEY_PROCESS)]
        named_runs = {
            (str(r.get("dag_id")), str(r.get("run_id")))
            for r in refs
            if isinstance(r, dict) and r.get("run_id")
        }
        proc = raw.get(KEY_PROCESS)
        # A process still recorded as RUNNING whose run is over (a killed worker) needs the reader's
        # live view of its task states to tell FAILED from RUNNING: read that table fully too.
        stale_running = isinstance(proc, dict) and proc.get("status") == "RUNNING"
        if table_dag_id(conn_id, identifier) in active_dags or named_runs & active or stale_running:
            out[(conn_id, identifier)] = get_table_runtime(conn_id, identifier).to_dict()
            continue
        raw_eval, raw_opt = raw.get(KEY_EVALUATION), raw.get(KEY_OPTIMIZED)
        evaluation: dict[str, Any] | None = raw_eval if isinstance(raw_eval, dict) else None
        optimized: dict[str, Any] = raw_opt if isinstance(raw_opt, dict) else {}
        status = status_without_active_run(raw)
        failure = raw.get(KEY_FAILURE)
        out[(conn_id, identifier)] = {
            "conn_id": conn_id,
            "table": identifier,
            "status": status,
            "last_minor_ms": optimized.get("last_minor_ms"),
            "last_major_ms": optimized.get("last_major_ms"),
            "last_full_ms": optimized.get("last_full_ms"),
            "last_optimized_snapshot_id": optimized.get("last_optimized_snapshot_id"),
            "last_commit_ms": optimized.get("last_commit_ms"),
            "pending": evaluation,
            "failure": failure if isinstance(failure, dict) and failure.get("count") else None,
        }
    return out


def get_runtime(conn_id: str, identifier: str) -> tuple[Any, str | None]:
    """``(runtime, error)`` of one table; runtime None when not available (error says why)."""
    try:
        from airflow_provider_amoro.runtime.reader import get_table_runtime
    except ImportError:
        return None, "runtime state reader is not installed"
    try:
        return get_table_runtime(conn_id, identifier), None
    except Exception as exc:  # noqa: BLE001 - show the reason on the page
        return None, f"cannot read runtime state: {exc}"


def get_history(conn_id: str, identifier: str, limit: int) -> tuple[list[Any] | None, str | None]:
    """``(processes, error)``: finished and running optimizing processes, newest first."""
    try:
        from airflow_provider_amoro.runtime.reader import get_optimizing_history
    except ImportError:
        return None, "runtime state reader is not installed"
    try:
        return list(get_optimizing_history(conn_id, identifier, limit=limit)), None
    except Exception as exc:  # noqa: BLE001 - show the reason on the page
        return None, f"cannot read optimizing history: {exc}"


def _attr(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]`` (runtime records may be dataclasses or dicts)."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


attr = _attr
to_ms = _to_ms
