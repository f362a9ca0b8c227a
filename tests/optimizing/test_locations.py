"""Native locations resolved once per directory agree with pyiceberg's own parsing."""

from __future__ import annotations

import pytest
from pyiceberg.io.fsspec import FsspecFileIO
from pyiceberg.io.pyarrow import PyArrowFileIO

from airflow_provider_amoro.optimizing.locations import native_location

S3_PROPS = {
    "s3.region": "us-east-1",
    "s3.endpoint": "http://127.0.0.1:9",
    "s3.access-key-id": "k" * 12,
    "s3.secret-access-key": "s" * 12,
}


@pytest.mark.parametrize(
    "location",
    [
        "/tmp/wh/db/t/metadata/0b1c-m0.avro",
        "file:///tmp/wh/db/t/data/00000-0-ab12.parquet",
        "/tmp/wh/db/t/data/../data/dt=2024-01-01/part_1.parquet",
        "s3://bucket/wh/db/t/metadata/snap-1-0-ab.avro",
        "s3a://bucket/wh/t/data/x.parquet",
    ],
)
def test_the_path_is_the_one_pyiceberg_opens(location: str) -> None:
    io = PyArrowFileIO(S3_PROPS)
    scheme, netloc, path = PyArrowFileIO.parse_location(location, io.properties)
    for _ in range(2):  # resolved, then from the directory cache
        located = native_location(io, location)
        assert located is not None
        assert located == (io.fs_by_scheme(scheme, netloc), path)


@pytest.mark.parametrize(
    "location",
    [
        "/tmp/wh/data/a b.parquet",  # not a plain name
        "/tmp/wh/data/x%20y.parquet",
        "s3://bucket/wh/data/x?.parquet",
        "s3://bucket/w#h/data/x.parquet",  # a fragment to urlparse in the directory
        "relative/dir/x.parquet",
        "x.parquet",
    ],
)
def test_unusual_locations_are_parsed_by_pyiceberg_every_time(location: str) -> None:
    from airflow_provider_amoro.optimizing import locations

    io = PyArrowFileIO(S3_PROPS)
    scheme, netloc, path = PyArrowFileIO.parse_location(location, io.properties)
    assert native_location(io, location) == (io.fs_by_scheme(scheme, netloc), path)
    assert not locations._directories.get(io)  # no directory remembered for them


def test_another_file_io_is_left_alone() -> None:
    assert native_location(FsspecFileIO({}), "/tmp/wh/metadata/m0.avro") is None


def test_the_directories_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_amoro.optimizing import locations

    monkeypatch.setattr(locations, "MAX_DIRECTORIES", 3)
    io = PyArrowFileIO({})
    for day in range(10):
        path = f"/tmp/wh/data/day={day}/f.parquet"
        assert native_location(io, path) == (io.fs_by_scheme("file", ""), path)
    assert len(locations._directories[io]) <= 3
