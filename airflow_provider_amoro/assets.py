"""One Airflow Asset per Iceberg table: the ``iceberg://`` URI scheme.

Every managed table is the Asset ``iceberg://<conn_id>/<namespace levels…>/<table>``, for example
``iceberg://amoro_default/db/orders`` or, with a two-level namespace,
``iceberg://lake/sales/eu/orders``. Each path segment is percent-encoded, so identifiers with ``/``,
``%`` or spaces round-trip exactly. The asset's ``name`` is its URI, so the asset state store,
outlet events, ``AssetWatcher`` and DAG schedules all address one and the same asset.

Every operator that changes a table emits an event for this asset; the table-change trigger watches
it; the runtime state of the table lives in the asset state store of this asset.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Asset

ICEBERG_SCHEME = "iceberg"
"""The URI scheme of table assets."""

ASSET_GROUP = "iceberg"
"""Asset group of table assets (shown in Airflow's asset views)."""


def identifier_parts(identifier: str | Sequence[str]) -> tuple[str, ...]:
    """Split a table identifier into ``(namespace levels…, table)``.

    Args:
        identifier: ``"ns.table"``, ``"ns1.ns2.table"`` or a tuple/list of parts (pyiceberg style).

    Returns:
        The parts; at least two (a namespace level and a table name).

    Raises:
        ValueError: if the identifier has no namespace or has an empty part.
    """
    parts = tuple(identifier.split(".")) if isinstance(identifier, str) else tuple(identifier)
    if len(parts) < 2 or any(not p for p in parts):
        raise ValueError(f"table identifier must be 'namespace.table' with non-empty parts: {identifier!r}")
    return parts


def table_asset_uri(conn_id: str, identifier: str | Sequence[str]) -> str:
    """The asset URI of a table: ``iceberg://<conn_id>/<namespace levels…>/<table>``.

    Args:
        conn_id: the Airflow connection id of the table's catalog.
        identifier: the table identifier (``"ns.table"`` or a tuple of parts).

    Returns:
        The normalized URI (the same string Airflow stores for the asset).
    """
    return _table_asset_uri(conn_id, identifier if isinstance(identifier, str) else tuple(identifier))


@lru_cache(maxsize=16_384)
def _table_asset_uri(conn_id: str, identifier: str | tuple[str, ...]) -> str:
    """:func:`table_asset_uri` of a hashable identifier, remembered (a DAG parse asks 13 times per table)."""
    if not conn_id or "/" in conn_id or "@" in conn_id or ":" in conn_id:
        raise ValueError(f"invalid connection id for an asset URI: {conn_id!r}")
    path = "/".join(urllib.parse.quote(p, safe="") for p in identifier_parts(identifier))
    return f"{ICEBERG_SCHEME}://{conn_id}/{path}"


@dataclass(frozen=True)
class TableRef:
    """A table addressed by connection id and identifier parts (parsed from an asset URI).

    Attributes:
        conn_id: the Airflow connection id of the catalog.
        parts: ``(namespace levels…, table)``.
        view: ``"changes"`` for the change asset (``x-amoro-changes://``), else None.
    """

    conn_id: str
    parts: tuple[str, ...]
    view: str | None = None

    @property
    def namespace(self) -> tuple[str, ...]:
        """Namespace levels."""
        return self.parts[:-1]

    @property
    def table_name(self) -> str:
        """The table's own name (last part)."""
        return self.parts[-1]

    @property
    def identifier(self) -> str:
        """Dotted identifier, ``ns.table`` (what :class:`AmoroCatalogHook.load_table` takes)."""
        return ".".join(self.parts)

    @property
    def uri(self) -> str:
        """The asset URI of this table."""
        return table_asset_uri(self.conn_id, self.parts)


CHANGES_SCHEME = "x-amoro-changes"
"""URI scheme of a table's *change* asset (``x-`` schemes are left as they are by Airflow)."""


def table_change_asset_uri(conn_id: str, identifier: str | Sequence[str]) -> str:
    """URI of a table's change asset: ``x-amoro-changes://<conn_id>/<namespace>/<table>``."""
    return CHANGES_SCHEME + table_asset_uri(conn_id, identifier)[len(ICEBERG_SCHEME) :]


def table_change_asset(
    conn_id: str, identifier: str | Sequence[str], *, watchers: Sequence[Any] | None = None
) -> Asset:
    """The *change* asset of a table: the one to schedule DAGs on and to attach ``AssetWatcher`` s to.

    Its events come only from watchers (e.g. a
    :class:`~airflow_provider_amoro.triggers.table_change.TableChangeTrigger` that ignores the
    optimizer's snapshots), never from operators: operators emit on :func:`table_asset`. A DAG
    scheduled on the change asset therefore runs on external commits only, and an optimizing
    commit does not schedule the table's DAG again. (The DAG factory's change feed uses the same URI.)

    Args:
        conn_id: the catalog connection id.
        identifier: the table identifier.
        watchers: ``AssetWatcher`` objects watching the table.
    """
    from airflow.sdk import Asset

    uri = table_change_asset_uri(conn_id, identifier)
    return Asset(name=uri, uri=uri, group=ASSET_GROUP, watchers=list(watchers or []))


def parse_table_asset_uri(uri: str) -> TableRef:
    """Parse an ``iceberg://`` asset URI back to connection id and identifier.

    Args:
        uri: a URI made by :func:`table_asset_uri` (or an equivalent one).

    Returns:
        The :class:`TableRef`.

    Raises:
        ValueError: if the URI is not a valid table asset URI.
    """
    split = urllib.parse.urlsplit(uri)
    if split.scheme not in (ICEBERG_SCHEME, CHANGES_SCHEME):
        raise ValueError(f"not an {ICEBERG_SCHEME}:// URI: {uri!r}")
    if not split.netloc:
        raise ValueError(f"{ICEBERG_SCHEME}:// URI needs a connection id as host: {uri!r}")
    segments = [urllib.parse.unquote(s) for s in split.path.strip("/").split("/") if s]
    if len(segments) < 2:
        raise ValueError(f"{ICEBERG_SCHEME}:// URI needs /<namespace>/<table>: {uri!r}")
    view = "changes" if split.scheme == CHANGES_SCHEME else None
    return TableRef(conn_id=split.netloc, parts=tuple(segments), view=view)


def table_asset(conn_id: str, identifier: str | Sequence[str]) -> Asset:
    """The Airflow Asset of a table (name = URI, group ``iceberg``).

    Args:
        conn_id: the Airflow connection id of the table's catalog.
        identifier: the table identifier.

    Returns:
        ``airflow.sdk.Asset`` for the table.
    """
    return _asset(table_asset_uri(conn_id, identifier))


@lru_cache(maxsize=16_384)
def _asset(uri: str) -> Asset:
    """One ``Asset`` object per table URI, shared by every task declaring it.

    Building an ``Asset`` runs Airflow's URI validation (this provider's :func:`sanitize_uri` among
    it); a generated DAG declares its table's asset on nine tasks, so sharing it saves a sixth of
    the parse time of 1,000 generated DAGs. Nothing mutates an ``Asset`` after it is made.
    """
    from airflow.sdk import Asset

    return Asset(name=uri, uri=uri, group=ASSET_GROUP)


def sanitize_uri(uri: urllib.parse.SplitResult) -> urllib.parse.SplitResult:
    """Airflow ``asset-uris`` handler: validate an ``iceberg://`` URI and normalize its path.

    Registered in the provider info, so Airflow rejects malformed table assets when a DAG is
    parsed. Normalization re-encodes each segment (``%2f`` and ``%2F`` give one asset).
    """
    ref = parse_table_asset_uri(urllib.parse.urlunsplit(uri))
    path = "/" + "/".join(urllib.parse.quote(p, safe="") for p in ref.parts)
    return uri._replace(path=path, query="", fragment="")


def create_asset(*, conn_id: str, identifier: str | Sequence[str]) -> Asset:
    """Airflow ``asset-uris`` factory: same as :func:`table_asset`."""
    return table_asset(conn_id, identifier)
