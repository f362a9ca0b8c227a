"""The iceberg:// table asset scheme: URIs, parsing, Airflow's registered normalizer, change assets."""

from __future__ import annotations

import urllib.parse

import pytest
from airflow.sdk import Asset

from airflow_provider_amoro.assets import (
    create_asset,
    parse_table_asset_uri,
    sanitize_uri,
    table_asset,
    table_asset_uri,
    table_change_asset,
    table_change_asset_uri,
)


@pytest.mark.parametrize(
    ("conn_id", "identifier", "uri"),
    [
        ("amoro_default", "db.orders", "iceberg://amoro_default/db/orders"),
        ("lake", ("sales", "eu", "orders"), "iceberg://lake/sales/eu/orders"),
        ("lake", "sales.eu.orders", "iceberg://lake/sales/eu/orders"),
        ("lake", ("odd ns", "a/b%c"), "iceberg://lake/odd%20ns/a%2Fb%25c"),
    ],
)
def test_uri_round_trip(conn_id: str, identifier: str | tuple[str, ...], uri: str) -> None:
    assert table_asset_uri(conn_id, identifier) == uri
    ref = parse_table_asset_uri(uri)
    assert ref.conn_id == conn_id and ref.uri == uri and ref.view is None
    parts = tuple(identifier.split(".")) if isinstance(identifier, str) else identifier
    assert ref.parts == parts and ref.namespace == parts[:-1] and ref.table_name == parts[-1]
    asset = table_asset(conn_id, identifier)
    assert asset.uri == uri and asset.name == uri and asset.group == "iceberg"
    assert create_asset(conn_id=conn_id, identifier=identifier) == asset


@pytest.mark.parametrize(
    "bad", ["s3://b/db/t", "iceberg:///db/t", "iceberg://conn/onlytable", "iceberg://conn/", "x://c/a/b"]
)
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_table_asset_uri(bad)


@pytest.mark.parametrize("bad", ["t", "db.", ".t", ("db",), ("db", "")])
def test_bad_identifiers(bad: str | tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="namespace"):
        table_asset_uri("c", bad)


@pytest.mark.parametrize("conn", ["", "a/b", "u@h", "h:1"])
def test_bad_conn_ids(conn: str) -> None:
    with pytest.raises(ValueError, match="connection id"):
        table_asset_uri(conn, "db.t")


def test_sanitizer_normalizes_and_airflow_uses_it() -> None:
    split = urllib.parse.urlsplit("iceberg://c/db/a%2fb?x=1#frag")
    assert urllib.parse.urlunsplit(sanitize_uri(split)) == "iceberg://c/db/a%2Fb"
    with pytest.raises(ValueError):
        sanitize_uri(urllib.parse.urlsplit("iceberg://c/onlytable"))
    # Registered as the provider's asset-uris handler: Airflow normalizes through it.
    assert Asset(uri="iceberg://c/db/a%2fb").uri == "iceberg://c/db/a%2Fb"
    with pytest.raises(ValueError):
        Asset(uri="iceberg://c/onlytable")


def test_change_asset() -> None:
    uri = table_change_asset_uri("lake", "db.t")
    assert uri == "x-amoro-changes://lake/db/t"
    ref = parse_table_asset_uri(uri)
    assert ref.view == "changes" and ref.uri == "iceberg://lake/db/t"
    asset = table_change_asset("lake", "db.t")
    assert asset.uri == uri and asset.name == uri and asset != table_asset("lake", "db.t")
