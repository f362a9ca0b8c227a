"""Real local servers for hook tests: a catalog that never answers, a tiny REST catalog with OAuth2."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@contextmanager
def black_hole() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte; yields its port.

    This is what a stalled catalog (or PostgreSQL behind a hung proxy) looks like to a client: the
    TCP handshake succeeds, then nothing.
    """
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


class RestCatalogServer:
    """A minimal Iceberg REST catalog (config, OAuth2 client credentials, namespaces) on a local port.

    Tokens are ``tok-<n>``; :meth:`expire_tokens` makes every issued token invalid (401), as a real
    catalog does when a token's lifetime ends.
    """

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.issued = 0
        self.valid: set[str] = set()
        self.namespaces = [["sales"], ["web"]]
        self.tables: dict[str, Any] = {}  # "ns/table" -> a pyiceberg table served with vended credentials
        self.loads = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, code: int, message: str) -> None:
                self._send(
                    code, {"error": {"message": message, "type": "NotAuthorizedException", "code": code}}
                )

            def do_GET(self) -> None:
                if self.path.startswith("/v1/config"):
                    self._send(200, {"defaults": {}, "overrides": {}})
                    return
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if token not in outer.valid:
                    self._error(401, "token expired or invalid")
                    return
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) == 5 and parts[3] == "tables" and f"{parts[2]}/{parts[4]}" in outer.tables:
                    table = outer.tables[f"{parts[2]}/{parts[4]}"]
                    outer.loads += 1
                    self._send(
                        200,
                        {
                            "metadata-location": table.metadata_location,
                            "metadata": json.loads(table.metadata.model_dump_json()),
                            "config": {
                                "s3.access-key-id": f"vended-key-{outer.loads}",
                                "s3.secret-access-key": f"vended-secret-{outer.loads}",
                                "s3.session-token": f"vended-token-{outer.loads}",
                            },
                        },
                    )
                    return
                if self.path.startswith("/v1/namespaces"):
                    top = "parent=" not in self.path
                    self._send(200, {"namespaces": outer.namespaces if top else []})
                    return
                self._error(404, "not found")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                if self.path.startswith("/v1/oauth/tokens"):
                    if form.get("client_id") != [outer.client_id] or form.get("client_secret") != [
                        outer.client_secret
                    ]:
                        self._error(401, "bad client credentials")
                        return
                    outer.issued += 1
                    token = f"tok-{outer.issued}"
                    outer.valid.add(token)
                    self._send(
                        200,
                        {
                            "access_token": token,
                            "token_type": "bearer",
                            "expires_in": 3600,
                            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                        },
                    )
                    return
                self._error(404, "not found")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        """The catalog's base URI."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far."""
        self.valid.clear()

    def __enter__(self) -> RestCatalogServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
