"""Fixtures for maintenance tests: a ``lake`` catalog on a local warehouse and on a real S3 server."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from catalogs import CatalogKind, catalog_for, catalog_params
from s3_server import s3_server  # noqa: F401 - re-exported fixture

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog


@pytest.fixture(params=catalog_params("sqlite", "s3-fsspec"))
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    """A fresh SQLite SQL catalog on a local folder, or on an S3 bucket (rclone serve s3) with fsspec IO.

    fsspec IO on S3: pyarrow's S3 deletes upset the rclone test server (see tests/s3_server.py).
    """
    kind: CatalogKind = request.param
    return catalog_for(kind, tmp_path, request)
