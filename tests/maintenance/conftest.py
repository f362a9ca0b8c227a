"""Fixtures for maintenance tests: a ``lake`` catalog on a local warehouse and on a real S3 server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from s3_server import S3Server, s3_server  # noqa: F401 - re-exported fixture


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh SQLite SQL catalog on a local folder, or on an S3 bucket (rclone serve s3) with fsspec IO."""
    from pyiceberg.catalog.sql import SqlCatalog

    name = f"cat_{uuid.uuid4().hex[:10]}"
    uri = f"sqlite:///{tmp_path / 'catalog.db'}"
    if request.param == "local":
        warehouse = tmp_path / "warehouse"
        warehouse.mkdir()
        return SqlCatalog(name, uri=uri, warehouse=warehouse.as_uri())
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = server.new_bucket()
    # pyiceberg's fsspec IO: pyarrow's S3 deletes upset the rclone test server (see s3_server.py)
    props = server.pyiceberg_properties(fsspec=True)
    return SqlCatalog(name, uri=uri, warehouse=f"s3://{bucket}/wh", **props)
