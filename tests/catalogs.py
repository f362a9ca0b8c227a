"""The one place tests build catalogs: :func:`make_catalog` and the parametrisation of ``catalog``.

Fixtures live in tests/conftest.py (``catalog``, ``sqlite_catalog``, ``pg_database``, ``s3_server``);
tests that need a catalog outside a fixture (hypothesis examples, a second catalog, a catalog for
separate Airflow processes) call :func:`make_catalog` or :func:`catalog_for` directly.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from s3_server import S3Server

CatalogKind = Literal["sqlite", "postgres", "s3", "s3-fsspec"]
"""Where a test catalog lives: a SQLite or PostgreSQL SQL catalog with a local warehouse, or a SQLite
SQL catalog whose warehouse is a bucket of the S3 test server (``s3``: pyiceberg's default pyarrow
FileIO; ``s3-fsspec``: its FsspecFileIO, which tests that delete files on S3 need, see s3_server.py)."""

SQL_KINDS: tuple[CatalogKind, ...] = ("sqlite", "postgres")


def make_catalog(
    kind: CatalogKind,
    root: Path,
    *,
    postgres_url: str | None = None,
    s3: S3Server | None = None,
) -> SqlCatalog:
    """Build a fresh pyiceberg SQL catalog of ``kind`` under the folder ``root``.

    The only place tests build a catalog. ``postgres_url`` (a SQLAlchemy URL) is required for
    ``postgres``, ``s3`` (a running :class:`S3Server`; each catalog gets a new bucket) for the S3
    kinds. Each catalog gets a fresh random name, so catalogs never share tables.
    """
    from pyiceberg.catalog.sql import SqlCatalog

    root.mkdir(parents=True, exist_ok=True)
    name = f"cat_{uuid.uuid4().hex[:10]}"
    uri = f"sqlite:///{root / 'catalog.db'}"
    if kind == "postgres":
        if postgres_url is None:
            raise ValueError("make_catalog('postgres') needs postgres_url")
        uri = postgres_url
    if kind in ("s3", "s3-fsspec"):
        if s3 is None:
            raise ValueError(f"make_catalog({kind!r}) needs the S3 server (s3=...)")
        props = s3.pyiceberg_properties(fsspec=kind == "s3-fsspec")
        return SqlCatalog(name, uri=uri, warehouse=f"s3://{s3.new_bucket()}/wh", **props)
    if kind not in ("sqlite", "postgres"):
        raise ValueError(f"unknown catalog kind {kind!r}: expected one of sqlite, postgres, s3, s3-fsspec")
    warehouse = root / "warehouse"
    warehouse.mkdir(exist_ok=True)
    return SqlCatalog(name, uri=uri, warehouse=warehouse.as_uri())


def catalog_for(kind: CatalogKind, root: Path, request: pytest.FixtureRequest) -> SqlCatalog:
    """:func:`make_catalog` with the servers ``kind`` needs taken from the session fixtures."""
    postgres_url = request.getfixturevalue("pg_database") if kind == "postgres" else None
    s3 = request.getfixturevalue("s3_server") if kind.startswith("s3") else None
    return make_catalog(kind, root, postgres_url=postgres_url, s3=s3)


def catalog_params(*kinds: CatalogKind) -> list[Any]:
    """``kinds`` as pytest params for the ``catalog`` fixture; the S3 ones carry the ``s3`` mark."""
    return [pytest.param(k, id=k, marks=[pytest.mark.s3] if k.startswith("s3") else []) for k in kinds]


def on_catalogs(*kinds: CatalogKind) -> pytest.MarkDecorator:
    """Run a test on the ``catalog`` fixture of these kinds instead of the default SQLite + PostgreSQL.

    For example ``@on_catalogs("sqlite", "s3-fsspec")``: the opt-in S3 parametrisation.
    """
    return pytest.mark.parametrize("catalog", catalog_params(*kinds), indirect=True)
