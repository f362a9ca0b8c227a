"""Shared fixtures: the one place tests build catalogs (:func:`make_catalog`) and the ``catalog`` fixture.

The ``catalog`` fixture runs a test on SQLite and on PostgreSQL SQL catalogs; :func:`on_catalogs`
opts a test into other kinds, such as an S3 warehouse (tests/s3_server.py).

PostgreSQL (127.0.0.1:5432, user ``postgres``, trust auth) gets one fresh database per test run;
each test gets its own catalog name in it, so tests never see each other's tables. Without a
reachable PostgreSQL the PostgreSQL variants skip, except when ``CI`` is set: then they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

# A per-session temporary AIRFLOW_HOME + metadata DB, set before any test module imports Airflow.
import airflow_fixtures  # noqa: F401
import pytest
from catalogs import SQL_KINDS, CatalogKind, catalog_for, catalog_params, make_catalog
from s3_server import s3_server  # noqa: F401 - the S3 server fixture (rclone serve s3), for every test folder

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.catalog.sql import SqlCatalog

PG_HOST = os.environ.get("AMORO_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("AMORO_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("AMORO_TEST_PG_USER", "postgres")


def _pg_connect(dbname: str) -> Any:
    import psycopg2

    return psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, connect_timeout=3)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run; yields its SQLAlchemy URL."""
    try:
        conn = _pg_connect("test")
    except Exception as exc:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_HOST}:{PG_PORT} is required when CI is set: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}: {exc}")
    name = f"amoro_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture(params=catalog_params(*SQL_KINDS))
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    """A fresh, empty catalog: by default once on SQLite and once on PostgreSQL (see :func:`on_catalogs`)."""
    kind: CatalogKind = request.param
    return catalog_for(kind, tmp_path, request)


@pytest.fixture
def sqlite_catalog(tmp_path: Path, request: pytest.FixtureRequest) -> SqlCatalog:
    """A fresh SQLite SQL catalog, for tests whose subject does not depend on the catalog."""
    return make_catalog("sqlite", tmp_path)
