"""AmoroCatalogHook against real SQLite and PostgreSQL SQL catalogs, connections given by env vars."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from airflow_fixtures import airflow_db  # noqa: F401 - fixture
from pyiceberg.catalog import Catalog

from airflow_provider_amoro.hooks.catalog import (
    AmoroCatalogError,
    AmoroCatalogHook,
    NamespaceNotFoundError,
    TableNotFoundError,
    catalog_properties_from_connection,
    redact_uri,
)

SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.string())])


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **extra: Any) -> None:
    login = extra.pop("login", None)
    password = extra.pop("password", None)
    body: dict[str, Any] = {"conn_type": "amoro", "extra": extra}
    if login is not None:
        body["login"] = login
    if password is not None:
        body["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))


def _conn_for(catalog: Catalog) -> dict[str, Any]:
    return {
        "catalog_type": "sql",
        "uri": catalog.properties["uri"],
        "warehouse": catalog.properties["warehouse"],
    }


@pytest.fixture
def populated(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The catalog fixture with a few tables, exposed as connection ``lake``."""
    for ns in ("sales", "web"):
        catalog.create_namespace(ns)
    for ident in ("sales.orders", "sales.orders2", "sales.events_click", "web.events_view", "web.pages"):
        t = catalog.create_table(ident, schema=SCHEMA)
        t.append(pa.table({"id": [1, 2], "v": ["a", "b"]}, schema=SCHEMA))
    _set_conn(monkeypatch, "lake", **_conn_for(catalog), catalog_name=catalog.name)
    return catalog


def test_load_table_and_rows(populated: Any) -> None:
    hook = AmoroCatalogHook(amoro_conn_id="lake")
    table = hook.load_table("sales.orders")
    assert table.scan().to_arrow().num_rows == 2
    assert hook.table_exists("sales.orders")
    assert not hook.table_exists("sales.nope")
    assert not hook.table_exists("nope.orders")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("sales.*", ["sales.events_click", "sales.orders", "sales.orders2"]),
        ("*.events_*", ["sales.events_click", "web.events_view"]),
        ("orders", ["sales.orders"]),
        ("*", ["sales.events_click", "sales.orders", "sales.orders2", "web.events_view", "web.pages"]),
        (None, ["sales.events_click", "sales.orders", "sales.orders2", "web.events_view", "web.pages"]),
        ("nothing.*", []),
    ],
)
def test_list_tables_globs(populated: Any, pattern: str | None, expected: list[str]) -> None:
    assert AmoroCatalogHook(amoro_conn_id="lake").list_tables(pattern) == expected


def test_test_connection(populated: Any) -> None:
    ok, message = AmoroCatalogHook(amoro_conn_id="lake").test_connection()
    assert ok, message
    assert "2 namespace(s)" in message


def test_missing_namespace_and_table(populated: Any) -> None:
    hook = AmoroCatalogHook(amoro_conn_id="lake")
    with pytest.raises(NamespaceNotFoundError, match="namespace 'finance' does not exist"):
        hook.load_table("finance.orders")
    with pytest.raises(TableNotFoundError, match="table 'missing' does not exist in namespace 'sales'"):
        hook.load_table("sales.missing")
    with pytest.raises(ValueError, match=r"namespace\.table"):
        hook.load_table("orders")


def test_unknown_catalog_type(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(monkeypatch, "bad", catalog_type="nessie", uri="http://x")
    with pytest.raises(AmoroCatalogError, match="unknown catalog type 'nessie'; expected one of sql, rest"):
        AmoroCatalogHook(amoro_conn_id="bad").get_catalog()
    ok, message = AmoroCatalogHook(amoro_conn_id="bad").test_connection()
    assert not ok and "nessie" in message


def test_missing_connection_names_it() -> None:
    with pytest.raises(AmoroCatalogError, match="connection 'not_there' is not defined"):
        AmoroCatalogHook(amoro_conn_id="not_there").get_catalog()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_catalog_redacts_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    _set_conn(
        monkeypatch,
        "down",
        catalog_type="sql",
        uri=f"postgresql+psycopg2://127.0.0.1:{port}/cat?connect_timeout=2",
        warehouse=tmp_path.as_uri(),
        login="alice",
        password="s3cr3t-pass",
    )
    hook = AmoroCatalogHook(amoro_conn_id="down")
    with pytest.raises(AmoroCatalogError) as err:
        hook.list_tables("*")
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "s3cr3t-pass" not in str(err.value)
    ok, message = AmoroCatalogHook(amoro_conn_id="down").test_connection()
    assert not ok and "s3cr3t-pass" not in message


def test_rest_catalog_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(
        monkeypatch, "rest", catalog_type="rest", uri=f"http://127.0.0.1:{_free_port()}", password="tok"
    )
    with pytest.raises(AmoroCatalogError, match="cannot connect to rest catalog"):
        AmoroCatalogHook(amoro_conn_id="rest").get_catalog()


def test_bad_properties_json(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(monkeypatch, "j", catalog_type="sql", uri="sqlite:///x.db", properties="{not json")
    with pytest.raises(AmoroCatalogError, match="'properties' must be a JSON object"):
        AmoroCatalogHook(amoro_conn_id="j").catalog_config()
    _set_conn(monkeypatch, "j2", catalog_type="sql", uri="sqlite:///x.db", properties="[1]")
    with pytest.raises(AmoroCatalogError, match="must be a JSON object, got list"):
        AmoroCatalogHook(amoro_conn_id="j2").catalog_config()


def test_properties_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(
        monkeypatch,
        "r",
        catalog_type="rest",
        uri="https://cat.example/api",
        warehouse="s3://b/w",
        login="client",
        password="secret",
        properties={"s3.endpoint": "http://minio:9000", "rest.sigv4-enabled": True},
    )
    hook = AmoroCatalogHook(amoro_conn_id="r")
    name, props = hook.catalog_config()
    assert name == "r"
    assert props == {
        "type": "rest",
        "uri": "https://cat.example/api",
        "warehouse": "s3://b/w",
        "credential": "client:secret",
        "s3.endpoint": "http://minio:9000",
        "rest.sigv4-enabled": "true",
        "s3.connect-timeout": "30",
        "s3.request-timeout": "30",
        "timeout": "30",
    }

    class Conn:  # the UI stores form fields with a prefix; both spellings are accepted
        conn_id = "ui"
        host = None
        login = None
        password = "tok"
        extra_dejson = {"extra__amoro__catalog_type": "REST", "extra__amoro__uri": "http://h"}

    assert catalog_properties_from_connection(Conn()) == (
        "ui",
        {
            "type": "rest",
            "uri": "http://h",
            "token": "tok",
            "s3.connect-timeout": "30",
            "s3.request-timeout": "30",
            "timeout": "30",
        },
    )


def test_missing_default_connection_is_an_error_not_the_embedded_lakehouse(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without ``amoro_default`` the hook fails naming it; it never silently writes a local SQLite."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_AMORO_DEFAULT", raising=False)
    with pytest.raises(AmoroCatalogError, match="connection 'amoro_default' is not defined") as err:
        AmoroCatalogHook().get_catalog()
    assert "catalog_type" in str(err.value) and "embedded" in str(err.value)
    assert not (tmp_path / "amoro").exists()


def test_embedded_lakehouse_when_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    _set_conn(monkeypatch, "amoro_default", catalog_type="embedded")
    hook = AmoroCatalogHook()
    catalog = hook.get_catalog()
    catalog.create_namespace("demo")
    catalog.create_table("demo.t", schema=SCHEMA)
    assert (tmp_path / "amoro" / "catalog.db").exists()
    assert AmoroCatalogHook().list_tables("demo.*") == ["demo.t"]


def test_pyiceberg_keys_are_accepted(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection written like a ``.pyiceberg.yaml`` entry (``type: sql``) works as is."""
    catalog.create_namespace("sales")
    catalog.create_table("sales.orders", schema=SCHEMA)
    _set_conn(
        monkeypatch,
        "pyice",
        type="sql",
        uri=catalog.properties["uri"],
        warehouse=catalog.properties["warehouse"],
        catalog_name=catalog.name,
        **{"pool_pre_ping": "true"},
    )
    hook = AmoroCatalogHook(amoro_conn_id="pyice")
    assert hook.list_tables() == ["sales.orders"]
    assert hook.catalog_config()[1]["pool_pre_ping"] == "true"


def test_other_catalog_names_are_named(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables written under another catalog name: the Test button fails and says which names exist."""
    catalog.create_namespace("sales")
    catalog.create_table("sales.orders", schema=SCHEMA)
    _set_conn(monkeypatch, "lake2", **_conn_for(catalog))  # no catalog_name: scoped to 'lake2'
    hook = AmoroCatalogHook(amoro_conn_id="lake2")
    assert hook.list_tables() == []
    ok, message = hook.test_connection()
    assert not ok
    assert "holds no namespace in this database while" in message and "catalog_name" in message, message
    assert catalog.name in hook.other_catalog_names()  # PostgreSQL: other tests' names are there too
    _set_conn(monkeypatch, "lake3", **_conn_for(catalog), catalog_name=catalog.name)
    ok, message = AmoroCatalogHook(amoro_conn_id="lake3").test_connection()
    assert ok and "1 namespace(s)" in message, message


PASSWORDS = {
    "at": "p@ssw0rd@host",
    "percent": "50%off%2Fx",
    "colon": "a:b:c:d",
    "slash": "s/l/a/s/h",
    "all": "x@y:z/w%2F%q",
}


@pytest.mark.parametrize("kind", sorted(PASSWORDS))
def test_odd_password_is_escaped_and_never_shown(
    kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture, request: Any
) -> None:
    """Each password character class: it reaches PostgreSQL intact (trust auth: the URL must parse
    to the right host and database) and it appears in no error, no log and no Test button result."""
    password = PASSWORDS[kind]
    pg_url = request.getfixturevalue("pg_database")
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    plain_uri = f"postgresql+psycopg2://{url.host}:{url.port}/{url.database}"
    _set_conn(
        monkeypatch,
        "pw_ok",
        catalog_type="sql",
        uri=plain_uri,
        warehouse=tmp_path.as_uri(),
        login="postgres",
        password=password,
    )
    hook = AmoroCatalogHook(amoro_conn_id="pw_ok")
    merged = make_url(hook.catalog_config()[1]["uri"])
    assert (merged.username, merged.password, merged.host, merged.database) == (
        "postgres",
        password,
        url.host,
        url.database,
    )
    ok, message = hook.test_connection()  # other tests' catalogs share the database: a hint, maybe
    assert message.startswith("Connected to sql catalog 'pw_ok'"), message

    port = _free_port()  # nothing listens there: the error names the place, never the password
    _set_conn(
        monkeypatch,
        "pw_down",
        catalog_type="sql",
        uri=f"postgresql+psycopg2://127.0.0.1:{port}/cat",
        warehouse=tmp_path.as_uri(),
        login="alice",
        password=password,
    )
    with caplog.at_level("DEBUG"):
        with pytest.raises(AmoroCatalogError) as err:
            AmoroCatalogHook(amoro_conn_id="pw_down").list_tables("*")
        ok, message = AmoroCatalogHook(amoro_conn_id="pw_down").test_connection()
    assert not ok
    shown = [str(err.value), repr(err.value), message, caplog.text]
    assert f"127.0.0.1:{port}" in str(err.value)
    from urllib.parse import quote

    for text in shown:
        for form in {password, quote(password, safe="")}:
            assert form not in text, (form, text)
    assert err.value.__cause__ is None  # the driver's own exception (with its URL) is not chained


def test_redact_uri() -> None:
    assert (
        redact_uri("postgresql://bob:pw@h:5432/db and s3://k:v@b")
        == "postgresql://bob:***@h:5432/db and s3://k:***@b"
    )
    # unescaped '@', ':' and '/' in the password: the whole password is masked
    assert redact_uri("see postgresql://bob:p@s:s/w@h:5432/db.") == "see postgresql://bob:***@h:5432/db."
    assert redact_uri("mysql://u:a%40b@h/db?password=zz&x=1") == "mysql://u:***@h/db?password=***&x=1"
    assert redact_uri("error near 'x' with tok3n", ["tok3n"]) == "error near 'x' with ***"
    assert redact_uri("s3://bucket/path/file.parquet") == "s3://bucket/path/file.parquet"


@pytest.mark.usefixtures("airflow_db")
def test_connection_in_the_metadata_db_is_seen_outside_a_task(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scripts and ``dag_factory sync`` run outside a task: a connection stored in Airflow's metadata
    DB (the UI's *Admin > Connections*) is found there too."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    catalog.create_namespace("sales")
    catalog.create_table("sales.orders", schema=SCHEMA)
    conn_id = f"db_{catalog.name}"
    monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)
    with create_session() as session:
        session.add(
            Connection(
                conn_id=conn_id,
                conn_type="amoro",
                extra=json.dumps({**_conn_for(catalog), "catalog_name": catalog.name}),
            )
        )
    try:
        from airflow.sdk import BaseHook

        with pytest.raises(Exception, match="isn't defined"):  # the Task SDK alone does not see it
            BaseHook.get_connection(conn_id)
        assert AmoroCatalogHook(amoro_conn_id=conn_id).list_tables() == ["sales.orders"]
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
