"""JSON API and pages of the Lakehouse plugin, through Airflow's real api-server app.

Tables are real (SQLite SQL catalog, real appends and deletes); the tables list comes from a cache
written by the DAG factory's own ``sync_catalog``; authentication is the api-server's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import create_demo_table, make_token, write_synthetic_cache

BASE = "/amoro/api/v1"


def _sync(cache_dir: Path, conn_id: str, include: str = "*") -> dict[str, Any]:
    """Run the DAG factory's catalog sync (evaluate on) for ``conn_id`` into ``cache_dir``."""
    from airflow_provider_amoro.dag_factory.config import parse_config
    from airflow_provider_amoro.dag_factory.sync import sync_catalog

    config = parse_config(
        {
            "version": 1,
            "cache_dir": str(cache_dir),
            "catalogs": {conn_id: {"include": [include]}},
            "optimizer_groups": {"default": {"slots": 2}},
            "catalog_sync": {"evaluate": True},
        }
    )
    return sync_catalog(config, conn_id)


# ---------------------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "path",
    [
        f"{BASE}/tables",
        f"{BASE}/catalogs",
        f"{BASE}/openapi.json",
        f"{BASE}/tables/amoro_default/lake.orders/details",
        f"{BASE}/tables/amoro_default/lake.orders/files",
        f"{BASE}/tables/amoro_default/lake.orders/snapshots",
        f"{BASE}/tables/amoro_default/lake.orders/snapshots/1/files",
        f"{BASE}/tables/amoro_default/lake.orders/optimizing-processes",
        f"{BASE}/tables/amoro_default/lake.orders/optimizing-processes/x/run/tasks",
        f"{BASE}/tables/amoro_default/lake.orders/maintenance",
    ],
)
def test_api_refuses_unauthenticated_requests(client: Any, ui_env: Path, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 401, r.text
    assert "tables" not in r.json()


def test_api_refuses_bad_and_expired_tokens(client: Any, ui_env: Path) -> None:
    r = client.get(f"{BASE}/tables", headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code in (401, 403)
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    expired = get_auth_manager().generate_jwt(
        SimpleAuthManagerUser(username="admin", role="admin"), expiration_time_in_seconds=-60
    )
    r = client.get(f"{BASE}/tables", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401


def test_user_without_role_is_forbidden_viewer_may_read(client: Any, ui_env: Path) -> None:
    r = client.get(f"{BASE}/tables", headers={"Authorization": f"Bearer {make_token('nobody', None)}"})
    assert r.status_code == 403
    r = client.get(f"{BASE}/tables", headers={"Authorization": f"Bearer {make_token('vera', 'viewer')}"})
    assert r.status_code == 200


def test_pages_redirect_to_login_and_accept_the_ui_cookie(client: Any, ui_env: Path) -> None:
    r = client.get("/amoro/", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/auth/login?next=")
    assert "<table" not in r.text
    # The Airflow UI's session cookie is enough (that is what the embedded page sends).
    client.cookies.set("_token", make_token())
    try:
        r = client.get("/amoro/", follow_redirects=False)
        assert r.status_code == 200
        assert 'id="tables"' in r.text
    finally:
        client.cookies.clear()


def test_static_assets_are_served_from_the_package(client: Any) -> None:
    for name, kind in (("lakehouse.js", "javascript"), ("lakehouse.css", "css"), ("lakehouse.svg", "svg")):
        r = client.get(f"/amoro/static/{name}")
        assert r.status_code == 200
        assert kind in r.headers["content-type"]
    # No page or script references another host (no CDN).
    js = client.get("/amoro/static/lakehouse.js").text
    assert "http://" not in js and "https://" not in js


def test_openapi_schema_lists_the_dashboard_endpoints(
    client: Any, auth: dict[str, str], ui_env: Path
) -> None:
    r = client.get(f"{BASE}/openapi.json", headers=auth)
    assert r.status_code == 200
    paths = r.json()["paths"]
    for p in (
        "/api/v1/catalogs",
        "/api/v1/tables",
        "/api/v1/tables/{conn_id}/{identifier}/details",
        "/api/v1/tables/{conn_id}/{identifier}/files",
        "/api/v1/tables/{conn_id}/{identifier}/snapshots",
        "/api/v1/tables/{conn_id}/{identifier}/optimizing-processes",
        "/api/v1/tables/{conn_id}/{identifier}/optimizing-processes/{process_id}/tasks",
        "/api/v1/tables/{conn_id}/{identifier}/maintenance",
    ):
        assert p in paths, p
        assert list(paths[p]) == ["get"], "the API is read-only"
    assert "TableSummary" in r.json()["components"]["schemas"]


# ------------------------------------------------------------------------------------- tables list


def test_tables_list_comes_from_the_catalog_sync_cache(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any
) -> None:
    table = create_demo_table(amoro_conn, "lake.orders")
    create_demo_table(amoro_conn, "lake.customers", batches=2)
    metrics = _sync(ui_env, "amoro_default")
    assert metrics["selected"] == 2 and metrics["failed"] == 0

    r = client.get(f"{BASE}/tables", headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert body["source"] == "cache"
    assert body["total"] == 2
    rows = {t["identifier"]: t for t in body["tables"]}
    orders = rows["lake.orders"]
    snap = table.current_snapshot()
    assert orders["snapshot_id"] == snap.snapshot_id
    assert orders["data_files"] == int(snap.summary["total-data-files"]) == 12  # 6 appends x 2 partitions
    assert orders["delete_files"] == int(snap.summary["total-delete-files"]) == 1
    assert orders["total_size"] == int(snap.summary["total-files-size"])
    assert orders["avg_file_size"] == orders["total_size"] // 13
    assert orders["records"] == 600
    assert orders["optimizer_group"] == "default"
    assert orders["dag_id"] == "amoro__amoro_default__lake__orders"
    assert 0 <= orders["health_score"] <= 100
    # 6 small files per partition with file-count trigger 3: the engine finds work.
    assert orders["status"] == "PENDING"
    assert orders["pending_reason"]

    # A table created after the sync is not listed: the list never scans the catalog.
    create_demo_table(amoro_conn, "lake.late", batches=1)
    r = client.get(f"{BASE}/tables", headers=auth)
    assert {t["identifier"] for t in r.json()["tables"]} == {"lake.orders", "lake.customers"}

    r = client.get(f"{BASE}/catalogs", headers=auth)
    assert r.json() == [
        {"conn_id": "amoro_default", "catalog": "amoro_default", "namespaces": ["lake"], "tables": 2}
    ]


def test_tables_list_without_cache_lists_the_catalog(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any
) -> None:
    table = create_demo_table(amoro_conn, "lake.orders", batches=2)
    body = client.get(f"{BASE}/tables", headers=auth).json()
    assert body["source"] == "catalog"
    (row,) = body["tables"]
    assert row["identifier"] == "lake.orders"
    assert row["data_files"] == int(table.current_snapshot().summary["total-data-files"])
    assert row["format"] == "iceberg v2"


def test_tables_filter_sort_and_page(client: Any, auth: dict[str, str], ui_env: Path) -> None:
    write_synthetic_cache(ui_env, "synthetic", 50)
    body = client.get(f"{BASE}/tables", headers=auth, params={"sort": "health_score", "order": "desc"}).json()
    scores = [t["health_score"] for t in body["tables"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 50
    body = client.get(f"{BASE}/tables", headers=auth, params={"namespace": "ns3"}).json()
    assert body["total"] == 5 and all(t["namespace"] == "ns3" for t in body["tables"])
    body = client.get(f"{BASE}/tables", headers=auth, params={"q": "T0042"}).json()
    assert [t["identifier"] for t in body["tables"]] == ["ns2.t0042"]
    body = client.get(f"{BASE}/tables", headers=auth, params={"status": "pending"}).json()
    assert body["total"] == 17  # i % 3 == 0 for i < 50
    body = client.get(
        f"{BASE}/tables", headers=auth, params={"sort": "total_size", "limit": 10, "offset": 5}
    ).json()
    assert body["total"] == 50 and len(body["tables"]) == 10
    r = client.get(f"{BASE}/tables", headers=auth, params={"sort": "nope"})
    assert r.status_code == 400


def test_cache_errors_are_shown_not_hidden(client: Any, auth: dict[str, str], ui_env: Path) -> None:
    (ui_env / "catalog__broken.json").write_text(
        json.dumps(
            {
                "version": 1,
                "conn_id": "broken",
                "tables": {"db.t": {"properties": {}, "summary": {}, "error": "NoSuchTableError: gone"}},
            }
        )
    )
    (row,) = client.get(f"{BASE}/tables", headers=auth).json()["tables"]
    assert row["error"] == "NoSuchTableError: gone"
    page = client.get("/amoro/", headers=auth).text
    assert "NoSuchTableError: gone" in page


# ---------------------------------------------------------------------------------------- one table


def test_details_schema_spec_sort_and_effective_properties(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any
) -> None:
    table = create_demo_table(amoro_conn)
    r = client.get(f"{BASE}/tables/amoro_default/lake.orders/details", headers=auth)
    assert r.status_code == 200, r.text
    d = r.json()
    assert [f["name"] for f in d["schema"]] == ["id", "region", "amount"]
    assert d["schema"][0] == {"id": 1, "name": "id", "type": "long", "required": True, "doc": "order id"}
    assert d["partition_spec"] == [
        {"field_id": 1000, "source_id": 2, "source_name": "region", "transform": "identity", "name": "region"}
    ]
    assert d["sort_order"][0]["source_name"] == "id"
    assert d["sort_order"][0]["direction"] == "asc"
    assert d["current_snapshot_id"] == table.current_snapshot().snapshot_id
    props = {p["name"]: p for p in d["properties"]}
    ts = props["self-optimizing.target-size"]
    assert ts == {
        "name": "self-optimizing.target-size",
        "value": "1048576",
        "default": "134217728",
        "effective": "1048576",
        "override": None,
        "source": "table",
        "amoro": True,
        "group": "self-optimizing",
    }
    assert props["self-optimizing.fragment-ratio"]["value"] is None
    assert props["self-optimizing.fragment-ratio"]["effective"] == "8"
    assert props["snapshot.keep.duration"]["effective"] == "720min"
    assert props["snapshot.keep.duration"]["group"] == "maintenance"
    assert props["clean-orphan-file.enabled"]["effective"] == "true"
    assert props["write.format.default"]["amoro"] is False
    assert d["property_errors"] == []
    ev = d["evaluation"]
    assert ev["error"] is None, ev
    assert ev["kind"] == "minor" and ev["reasons"]


def test_invalid_amoro_property_is_reported(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any
) -> None:
    table = create_demo_table(amoro_conn, batches=1)
    with table.transaction() as tx:
        tx.set_properties({"self-optimizing.quota": "lots"})
    d = client.get(
        f"{BASE}/tables/amoro_default/lake.orders/details", headers=auth, params={"evaluate": False}
    ).json()
    assert any("self-optimizing.quota" in e for e in d["property_errors"])


def test_files_by_partition_classes_and_histogram(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any
) -> None:
    table = create_demo_table(amoro_conn)
    r = client.get(
        f"{BASE}/tables/amoro_default/lake.orders/files", headers=auth, params={"with_files": True}
    )
    assert r.status_code == 200
    f = r.json()
    parts = {p["partition"]: p for p in f["partitions"]}
    assert set(parts) == {"region=eu", "region=us"}
    assert parts["region=eu"]["data_files"] == parts["region=us"]["data_files"] == 6
    assert sum(p["records"] for p in f["partitions"]) == 600
    assert sum(p["position_delete_files"] for p in f["partitions"]) == 1
    live = table.inspect.files().to_pylist()
    data_sizes = sorted(x["file_size_in_bytes"] for x in live if x["content"] == 0)
    assert sum(p["data_size"] for p in f["partitions"]) == sum(data_sizes)
    assert sum(b["count"] for b in f["histogram"]) == 12
    assert sum(b["bytes"] for b in f["histogram"]) == sum(data_sizes)
    # target 1 MiB -> fragments <= 128 KiB: every tiny file is a fragment.
    assert f["thresholds"] == {"fragment_size": 131072, "min_target_size": 786432, "target_size": 1048576}
    assert f["classes"] == {"fragment": 12, "undersized": 0, "target": 0}
    assert len(f["files"]) == 13
    eu = client.get(
        f"{BASE}/tables/amoro_default/lake.orders/files",
        headers=auth,
        params={"with_files": True, "partition": "region=eu"},
    ).json()
    assert {x["partition"] for x in eu["files"]} == {"region=eu"}
    assert len(eu["files"]) == 6 + sum(
        1 for x in f["files"] if x["partition"] == "region=eu" and x["content"] != "data"
    )


def test_snapshots_and_history(client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any) -> None:
    table = create_demo_table(amoro_conn, batches=3)
    snaps = client.get(f"{BASE}/tables/amoro_default/lake.orders/snapshots", headers=auth).json()
    assert len(snaps) == 4
    newest = snaps[0]
    assert newest["current"] and newest["snapshot_id"] == table.current_snapshot().snapshot_id
    assert newest["operation"] == "delete" or newest["added_delete_files"] == 1
    assert newest["added_delete_files"] == 1
    appends = [s for s in snaps if s["operation"] == "append"]
    assert len(appends) == 3 and all(
        s["added_data_files"] == 2 and s["added_records"] == 100 for s in appends
    )
    hist = client.get(f"{BASE}/tables/amoro_default/lake.orders/history", headers=auth).json()["points"]
    assert [p["files"] for p in hist] == [2, 4, 6, 7]
    assert hist[-1]["delete_files"] == 1
    assert all(p["avg_file_size"] > 0 for p in hist)


def test_snapshot_files_lists_exactly_what_a_snapshot_added_and_removed(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any
) -> None:
    from airflow_provider_amoro.optimizing import optimize
    from airflow_provider_amoro.testing.reader import content_hash, read_table

    table = create_demo_table(amoro_conn, batches=3)
    base = f"{BASE}/tables/amoro_default/lake.orders/snapshots"
    live_before = {r["file_path"] for r in table.inspect.files().to_pylist()}
    delete_snap = table.current_snapshot().snapshot_id
    got = client.get(f"{base}/{delete_snap}/files", headers=auth).json()
    assert got["snapshot"]["snapshot_id"] == delete_snap and got["snapshot"]["current"]
    assert [f["content"] for f in got["added_files"]] == ["position_deletes"] and not got["removed_files"]
    assert got["added_files"][0]["partition"] in ("region=eu", "region=us")

    rows_before = read_table(table)
    result = optimize(table, kind="full")
    table = amoro_conn.load_table("lake.orders")
    rows_after = read_table(table)  # the rewrite keeps every row (independent iceberg-rust reader)
    assert (content_hash(rows_after), rows_after.num_rows) == (
        content_hash(rows_before),
        rows_before.num_rows,
    )
    live_after = {r["file_path"] for r in table.inspect.files().to_pylist()}
    snap = table.current_snapshot()
    assert snap.snapshot_id == result.snapshot_id
    got = client.get(f"{base}/{snap.snapshot_id}/files", headers=auth).json()
    assert {f["file_path"] for f in got["removed_files"]} == live_before - live_after
    assert {f["file_path"] for f in got["added_files"]} == live_after - live_before
    assert got["removed_count"] == len(live_before) == 7 and got["added_count"] == len(live_after)
    assert sum(f["record_count"] for f in got["added_files"]) == rows_after.num_rows
    assert {f["partition"] for f in got["added_files"]} == {"region=eu", "region=us"}
    assert int(got["snapshot"]["summary"]["deleted-data-files"]) == 6

    cut = client.get(f"{base}/{snap.snapshot_id}/files?limit=3", headers=auth).json()
    assert cut["truncated"] and len(cut["added_files"]) + len(cut["removed_files"]) == 3
    assert cut["removed_count"] == 7
    first_append = min(table.snapshots(), key=lambda s: s.sequence_number).snapshot_id
    got = client.get(f"{base}/{first_append}/files", headers=auth).json()
    assert len(got["added_files"]) == 2 and not got["removed_files"] and not got["snapshot"]["current"]
    assert client.get(f"{base}/12345/files", headers=auth).status_code == 404
    assert client.get(f"{base}/{delete_snap}/files").status_code == 401


def test_unknown_table_is_404(client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any) -> None:
    r = client.get(f"{BASE}/tables/amoro_default/lake.nope/details", headers=auth)
    assert r.status_code == 404
    r = client.get("/amoro/tables/amoro_default/lake.nope", headers={**auth, "accept": "text/html"})
    assert r.status_code == 404 and "<h1>404</h1>" in r.text


# ------------------------------------------------------------------------------------------- pages


def test_list_page_renders_rows_with_health_status_and_dag_link(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any
) -> None:
    create_demo_table(amoro_conn)
    _sync(ui_env, "amoro_default")
    r = client.get("/amoro/", headers=auth)
    assert r.status_code == 200
    page = r.text
    assert 'data-identifier="lake.orders"' in page
    assert 'href="/dags/amoro__amoro_default__lake__orders"' in page
    assert 'href="/amoro/tables/amoro_default/lake.orders"' in page
    assert "s-pending" in page
    assert 'src="/amoro/static/lakehouse.js"' in page


def test_table_page_has_all_tabs_and_the_chart(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any
) -> None:
    create_demo_table(amoro_conn)
    r = client.get("/amoro/tables/amoro_default/lake.orders", headers=auth)
    assert r.status_code == 200, r.text
    page = r.text
    for tab in ("details", "files", "snapshots", "optimizing", "maintenance"):
        assert f'id="tab-{tab}"' in page
    assert 'id="history-chart"' in page and page.count('class="dot files"') == 7
    assert 'id="histogram-chart"' in page
    assert 'data-property="self-optimizing.target-size"' in page
    assert "region=eu" in page
    assert "https://" not in page.replace("https://iceberg", "")  # nothing loaded from another host


def test_dag_factory_overrides_are_the_effective_values(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    create_demo_table(amoro_conn, "lake.orders", batches=2)
    config = tmp_path / "amoro.yaml"
    config.write_text(
        f"""
version: 1
cache_dir: {ui_env}
catalogs:
  amoro_default:
    include: ["lake.*"]
    tables:
      "lake.orders":
        properties:
          self-optimizing.target-size: 4194304
          snapshot.keep.duration: 2h
optimizer_groups:
  default:
    slots: 2
"""
    )
    monkeypatch.setenv("AMORO_DAGS_CONFIG", str(config))
    d = client.get(f"{BASE}/tables/amoro_default/lake.orders/details", headers=auth).json()
    props = {p["name"]: p for p in d["properties"]}
    ts = props["self-optimizing.target-size"]
    assert (ts["value"], ts["override"], ts["effective"], ts["source"]) == (
        "1048576",
        "4194304",
        "4194304",
        "factory",
    )
    keep = props["snapshot.keep.duration"]
    assert (keep["value"], keep["effective"], keep["source"]) == (None, "2h", "factory")
    assert props["self-optimizing.fragment-ratio"]["source"] == "default"
    files = client.get(f"{BASE}/tables/amoro_default/lake.orders/files", headers=auth).json()
    assert files["thresholds"]["target_size"] == 4194304 and files["thresholds"]["fragment_size"] == 524288
    page = client.get("/amoro/tables/amoro_default/lake.orders", headers=auth).text
    assert "DAG factory: <code>4194304</code>" in page


def test_equality_deletes_are_counted_and_lower_health(
    client: Any, auth: dict[str, str], ui_env: Path, amoro_conn: Any
) -> None:
    import pyarrow as pa

    from airflow_provider_amoro.testing.deletes import add_equality_deletes

    table = create_demo_table(amoro_conn, "lake.cdc", batches=2)
    health_before = client.get(f"{BASE}/tables/amoro_default/lake.cdc/details", headers=auth).json()
    add_equality_deletes(
        table,
        pa.table({"id": pa.array([1, 2, 3, 4], pa.int64()), "region": ["eu", "us", "eu", "us"]}),
        ["id"],
    )
    files = client.get(f"{BASE}/tables/amoro_default/lake.cdc/files", headers=auth).json()
    parts = {p["partition"]: p for p in files["partitions"]}
    assert parts["region=eu"]["equality_delete_files"] == parts["region=us"]["equality_delete_files"] == 1
    assert all(p["equality_delete_size"] > 0 for p in parts.values())
    snaps = client.get(f"{BASE}/tables/amoro_default/lake.cdc/snapshots", headers=auth).json()
    assert snaps[0]["added_delete_files"] == 2 and snaps[0]["total_delete_files"] == 3
    details = client.get(f"{BASE}/tables/amoro_default/lake.cdc/details", headers=auth).json()
    assert details["evaluation"]["health_score"] < health_before["evaluation"]["health_score"]
    _sync(ui_env, "amoro_default")
    (row,) = [t for t in client.get(f"{BASE}/tables", headers=auth).json()["tables"] if t["table"] == "cdc"]
    assert row["delete_files"] == 3
