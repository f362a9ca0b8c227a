"""Catalogs that stall, and REST credentials that expire: real local servers, no mocks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from catalog_servers import RestCatalogServer, black_hole

from airflow_provider_amoro.hooks.catalog import AmoroCatalogError, AmoroCatalogHook


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    body: dict[str, Any] = {"conn_type": "amoro"}
    for key in ("login", "password"):
        if key in fields:
            body[key] = fields.pop(key)
    body["extra"] = fields
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["rest", "postgresql"])
def test_catalog_that_never_answers_fails_within_the_timeout(
    kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A catalog accepting connections and never answering: the hook fails within its timeout."""
    with black_hole() as port:
        uri = (
            f"http://127.0.0.1:{port}" if kind == "rest" else f"postgresql+psycopg2://u@127.0.0.1:{port}/cat"
        )
        _set_conn(monkeypatch, "stalled", catalog_type=kind if kind == "rest" else "sql", uri=uri, timeout=2)
        started = time.monotonic()
        with pytest.raises(AmoroCatalogError, match=r"timeout 2 s") as err:
            AmoroCatalogHook(amoro_conn_id="stalled").list_tables()
        elapsed = time.monotonic() - started
        assert f"127.0.0.1:{port}" in str(err.value)
        # libpq may try twice (with and without SSL), each bounded by connect_timeout.
        assert elapsed < 10, f"took {elapsed:.1f} s"
        ok, message = AmoroCatalogHook(amoro_conn_id="stalled").test_connection()
        assert not ok and f"127.0.0.1:{port}" in message


def test_timeout_must_be_a_sane_number(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(monkeypatch, "t", catalog_type="rest", uri="http://h", timeout="soon")
    with pytest.raises(AmoroCatalogError, match=r"'timeout' must be a number of seconds .* got 'soon'"):
        AmoroCatalogHook(amoro_conn_id="t").catalog_config()


def test_rest_client_credentials_refresh_after_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    """login + password are OAuth2 client credentials: a new token is fetched when one expires."""
    with RestCatalogServer("client", "s3cr@t:/%") as server:
        _set_conn(
            monkeypatch, "oauth", catalog_type="rest", uri=server.uri, login="client", password="s3cr@t:/%"
        )
        hook = AmoroCatalogHook(amoro_conn_id="oauth")
        assert hook.list_namespaces() == ["sales", "web"]
        issued = server.issued  # pyiceberg fetches one for its config call and one for its session
        assert issued >= 1
        server.expire_tokens()
        assert hook.list_namespaces() == ["sales", "web"]  # same hook, same catalog object
        assert server.issued == issued + 1


def test_rest_id_secret_password_alone_is_a_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    with RestCatalogServer("client", "secret") as server:
        _set_conn(monkeypatch, "oauth2", catalog_type="rest", uri=server.uri, password="client:secret")
        hook = AmoroCatalogHook(amoro_conn_id="oauth2")
        assert hook.list_namespaces() == ["sales", "web"]
        issued = server.issued
        server.expire_tokens()
        assert hook.list_namespaces() == ["sales", "web"]
        assert server.issued == issued + 1


def test_rest_static_token_cannot_refresh_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare password is a static bearer token; once the catalog rejects it, the error is clear."""
    with RestCatalogServer("client", "secret") as server:
        server.valid.add("static-token")
        _set_conn(monkeypatch, "static", catalog_type="rest", uri=server.uri, password="static-token")
        hook = AmoroCatalogHook(amoro_conn_id="static")
        assert hook.list_namespaces() == ["sales", "web"]
        server.expire_tokens()
        with pytest.raises(AmoroCatalogError) as err:
            hook.list_namespaces()
        assert "static-token" not in str(err.value)


def test_vended_storage_credentials_are_refreshed_while_the_table_lives(
    monkeypatch: pytest.MonkeyPatch, sqlite_catalog: Any
) -> None:
    """A REST catalog vends short-lived storage credentials with each table load; pyiceberg never
    renews them. The hook swaps in fresh ones every ``credential_refresh`` seconds."""
    import pyarrow as pa

    sqlite_catalog.create_namespace("sales")
    real = sqlite_catalog.create_table("sales.orders", schema=pa.schema([("id", pa.int64())]))
    real.append(pa.table({"id": [1, 2, 3]}, schema=pa.schema([("id", pa.int64())])))
    real = sqlite_catalog.load_table("sales.orders")
    with RestCatalogServer("client", "secret") as server:
        server.tables["sales/orders"] = real
        _set_conn(
            monkeypatch,
            "vend",
            catalog_type="rest",
            uri=server.uri,
            login="client",
            password="secret",
            credential_refresh=0.3,
        )
        table = AmoroCatalogHook(amoro_conn_id="vend").load_table("sales.orders")
        first = table.io.properties["s3.session-token"]
        assert first.startswith("vended-token-")
        deadline = time.monotonic() + 10
        while table.io.properties["s3.session-token"] == first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert table.io.properties["s3.session-token"] != first
        assert table.metadata.current_snapshot_id == real.metadata.current_snapshot_id
        assert table.scan().to_arrow().num_rows == 3  # the fresh io reads the table
