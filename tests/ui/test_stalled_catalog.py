"""A catalog that accepts connections and never answers, behind the Lakehouse API and pages.

Through Airflow's real api-server app: while 45 Lakehouse requests wait on the stalled catalog,
Airflow's own API keeps answering; the Lakehouse requests end with 504 (or 503 when too many wait),
never hang; errors for unknown connections and malformed identifiers are 4xx and secrets never
appear in the error JSON. The same again through a real ``airflow api-server`` process over HTTP.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from catalog_servers import black_hole

from .conftest import running_api_server

BASE = "/amoro/api/v1"


@pytest.fixture
def fast_ui_timeout(monkeypatch: pytest.MonkeyPatch) -> Any:
    from airflow_provider_amoro.ui import app as ui_app

    monkeypatch.setenv("AMORO_UI_TIMEOUT_S", "2")
    monkeypatch.setenv("AMORO_UI_WORKERS", "4")
    ui_app.reset_catalog_calls()
    yield
    ui_app.reset_catalog_calls()


@pytest.mark.timeout(180)
def test_airflow_api_answers_while_the_lakehouse_waits_on_a_stalled_catalog(
    client: Any, auth: dict[str, str], ui_env: Path, monkeypatch: pytest.MonkeyPatch, fast_ui_timeout: Any
) -> None:
    with black_hole() as port:
        body = {
            "conn_type": "amoro",
            "extra": {"catalog_type": "rest", "uri": f"http://127.0.0.1:{port}", "timeout": 8},
        }
        monkeypatch.setenv("AIRFLOW_CONN_STALLED", json.dumps(body))

        def lakehouse(i: int) -> int:
            r = client.get(f"{BASE}/tables/stalled/ns.t{i}/details", headers=auth)
            return int(r.status_code)

        def airflow(path: str) -> tuple[int, float]:
            started = time.monotonic()
            r = client.get(path, headers=auth)
            return int(r.status_code), time.monotonic() - started

        with ThreadPoolExecutor(max_workers=60) as pool:
            started = time.monotonic()
            waiting = [pool.submit(lakehouse, i) for i in range(45)]
            time.sleep(0.5)  # every Lakehouse request is now waiting on the catalog (or refused)
            own = [airflow(p) for p in ("/api/v2/monitor/health", "/api/v2/dags", "/api/v2/version") * 3]
            codes = [f.result(timeout=60) for f in waiting]
            elapsed = time.monotonic() - started
    for code, took in own:
        assert code == 200 and took < 2.0, own
    assert set(codes) <= {503, 504}, codes
    assert 504 in codes
    assert elapsed < 30, elapsed  # nothing waits for the catalog beyond the Lakehouse's timeout


def _http_get(url: str, headers: dict[str, str], timeout: float) -> tuple[int, Any, float]:
    """``(status, JSON body or None, seconds)`` of a GET; an HTTP error status is a result, not a raise."""
    started = time.monotonic()
    request = urllib.request.Request(url, headers={**headers, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            code, raw = int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        code, raw = int(exc.code), exc.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return code, body, time.monotonic() - started


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_real_api_server_answers_while_the_lakehouse_waits_on_a_stalled_catalog(
    auth: dict[str, str], ui_env: Path, tmp_path: Path
) -> None:
    """``airflow api-server`` over HTTP: 45 Lakehouse requests (API and page) on a stalled catalog
    end in 503/504 with a JSON reason while Airflow's health and DAG endpoints, polled throughout,
    answer in seconds."""
    with black_hole() as port:
        conn = {
            "conn_type": "amoro",
            "extra": {"catalog_type": "rest", "uri": f"http://127.0.0.1:{port}", "timeout": 8},
        }
        env = {"AIRFLOW_CONN_STALLED": json.dumps(conn), "AMORO_UI_TIMEOUT_S": "3", "AMORO_UI_WORKERS": "4"}
        with running_api_server(tmp_path / "api-server.log", env) as url:
            for path in ("/api/v2/monitor/health", "/api/v2/dags"):  # warm up before timing
                assert _http_get(url + path, auth, 60)[0] == 200
            lakehouse_paths = [f"{BASE}/tables/stalled/ns.t{i}/details" for i in range(40)]
            lakehouse_paths += [f"/amoro/tables/stalled/ns.p{i}" for i in range(5)]  # the page itself
            with ThreadPoolExecutor(max_workers=len(lakehouse_paths)) as pool:
                started = time.monotonic()
                waiting = [pool.submit(_http_get, url + p, auth, 60) for p in lakehouse_paths]
                own: list[tuple[str, int, float]] = []
                while not all(f.done() for f in waiting) and time.monotonic() - started < 60:
                    for path in ("/api/v2/monitor/health", "/api/v2/dags"):
                        code, _, took = _http_get(url + path, auth, 30)
                        own.append((path, code, took))
                    time.sleep(0.2)
                lakehouse = [f.result(timeout=60) for f in waiting]
                elapsed = time.monotonic() - started
    codes = [code for code, _, _ in lakehouse]
    slowest = max(took for _, _, took in own)
    print(
        f"Airflow: {len(own)} calls, slowest {slowest:.2f} s; Lakehouse: {sorted(set(codes))} {elapsed:.1f} s"
    )
    assert len(own) >= 4, own  # Airflow was polled while the Lakehouse requests waited
    slow = [(path, code, took) for path, code, took in own if code != 200 or took > 2.5]
    assert not slow, slow
    assert set(codes) <= {503, 504}, codes
    assert 504 in codes
    for code, body, _ in lakehouse:
        assert isinstance(body, dict) and isinstance(body.get("detail"), str), (code, body)
        assert ("did not answer" if code == 504 else "busy") in body["detail"], body
    assert max(took for _, _, took in lakehouse) < 20 and elapsed < 30, (elapsed, lakehouse)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (f"{BASE}/tables/nobody_defined_this/ns.t/details", 404),
        (f"{BASE}/tables/amoro_default/no_dot_here/details", 400),
        (f"{BASE}/tables/amoro_default/ns.t/files", 404),
    ],
)
def test_client_errors_are_4xx(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any, path: str, code: int
) -> None:
    r = client.get(path, headers=auth)
    assert r.status_code == code, r.text


def test_error_json_never_shows_the_password(
    client: Any, auth: dict[str, str], ui_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    password = "x@y:z/w%2F%q"
    body = {
        "conn_type": "amoro",
        "login": "alice",
        "password": password,
        "extra": {
            "catalog_type": "sql",
            "uri": f"postgresql+psycopg2://127.0.0.1:{port}/cat",
            "warehouse": tmp_path.as_uri(),
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_PWDOWN", json.dumps(body))
    r = client.get(f"{BASE}/tables/pwdown/ns.t/details", headers=auth)
    assert r.status_code == 502, r.text
    assert f"127.0.0.1:{port}" in r.text
    from urllib.parse import quote

    for form in (password, quote(password, safe=""), json.dumps(password)[1:-1]):
        assert form not in r.text, r.text


def test_an_empty_live_listing_says_why(
    client: Any, auth: dict[str, str], ui_env: Path, sqlite_catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tables written under another catalog name: the list is empty and says which names hold them;
    an unreachable catalog: the list says so (redacted) instead of looking like an empty lakehouse."""
    import pyarrow as pa

    sqlite_catalog.create_namespace("sales")
    sqlite_catalog.create_table("sales.orders", schema=pa.schema([("id", pa.int64())]))
    extra = {
        "catalog_type": "sql",
        "uri": sqlite_catalog.properties["uri"],
        "warehouse": sqlite_catalog.properties["warehouse"],
    }  # no catalog_name: scoped to 'amoro_default'
    monkeypatch.setenv("AIRFLOW_CONN_AMORO_DEFAULT", json.dumps({"conn_type": "amoro", "extra": extra}))
    body = client.get(f"{BASE}/tables", headers=auth).json()
    assert body["source"] == "catalog" and body["tables"] == []
    assert any(f"'{sqlite_catalog.name}' do; set 'catalog_name'" in n for n in body["notes"]), body

    from airflow_provider_amoro.ui import sources

    sources.reset_catalogs()
    down = {
        "catalog_type": "sql",
        "uri": "postgresql+psycopg2://127.0.0.1:1/cat",
        "warehouse": "file:///tmp/x",
    }
    monkeypatch.setenv(
        "AIRFLOW_CONN_AMORO_DEFAULT",
        json.dumps({"conn_type": "amoro", "login": "u", "password": "se@cr:et/%", "extra": down}),
    )
    r = client.get(f"{BASE}/tables", headers=auth)
    notes = r.json()["notes"]
    assert any("cannot list the tables of connection 'amoro_default'" in n for n in notes), notes
    assert "se@cr:et/%" not in r.text and "se%40cr" not in r.text
