"""docker-compose.yaml and the Dockerfile checked against the code (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_amoro.dag_factory.config import CACHE_DIR_ENV_VAR, CONFIG_ENV_VAR, load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"

AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def airflow_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: svc for name, svc in services.items() if name.startswith("airflow-")}


def env(svc: dict[str, Any]) -> dict[str, str]:
    raw = svc.get("environment") or {}
    assert isinstance(raw, dict), "environment must be a mapping"
    return {str(k): str(v) for k, v in raw.items()}


def command(svc: dict[str, Any]) -> str:
    cmd = svc.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def test_every_component_of_a_production_deployment_is_there(services: dict[str, Any]) -> None:
    for name, cmd in AIRFLOW_COMPONENTS.items():
        assert name in services, name
        assert command(services[name]) == cmd
    workers = [n for n, s in services.items() if command(s).startswith("celery worker")]
    assert len(workers) == 2
    hostnames = {re.search(r"--celery-hostname (\S+)", command(services[w])).group(1) for w in workers}  # type: ignore[union-attr]
    assert len(hostnames) == 2, "workers need distinct Celery hostnames"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["minio"]["image"].startswith("minio/minio")
    assert "minio-init" in services and "airflow-init" in services
    for name, svc in services.items():
        for dep in svc.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_airflow_services_share_image_executor_and_backends(services: dict[str, Any]) -> None:
    for name, svc in airflow_services(services).items():
        assert svc.get("build") == ".", name
        assert svc["image"] == "airflow-provider-amoro:latest"
        e = env(svc)
        assert e["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert "@postgres:5432/" in e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert e["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/")
        assert e["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
        assert e["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")


def test_every_airflow_setting_is_a_real_airflow_option(services: dict[str, Any]) -> None:
    from airflow.configuration import conf

    description = conf.configuration_description  # core and installed providers (celery)
    for name, svc in airflow_services(services).items():
        for key in env(svc):
            m = re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)", key)
            if not m:
                continue
            section, option = m.group(1).lower(), m.group(2).lower()
            assert section in description, f"{name}: unknown Airflow config section in {key}"
            assert option in description[section]["options"], f"{name}: unknown Airflow option {key}"


def test_dags_folder_config_and_cache_match_the_code(services: dict[str, Any]) -> None:
    for name, svc in airflow_services(services).items():
        e = env(svc)
        mounts = {}
        for vol in svc["volumes"]:
            src, dst = vol.split(":")[:2]
            mounts[dst] = src
        dags_folder = e["AIRFLOW__CORE__DAGS_FOLDER"]
        assert dags_folder in mounts, f"{name}: the dags folder is not mounted"
        host_dags = REPO / mounts[dags_folder]
        assert (host_dags / "amoro_dags.py").is_file()
        # the config env var the code reads points at the mounted example configuration
        cfg_path = Path(e[CONFIG_ENV_VAR])
        assert cfg_path.parent == Path(dags_folder)
        assert (host_dags / cfg_path.name).is_file()
        load_config(host_dags / cfg_path.name)
        # the table list is on object storage that every host reaches (the MinIO bucket), with
        # fsspec's own configuration for s3:// pointing at MinIO with its credentials
        table_list = e[CACHE_DIR_ENV_VAR]
        assert table_list.startswith("s3://warehouse/"), name
        fsspec_s3 = json.loads(e["FSSPEC_S3"])
        assert fsspec_s3["client_kwargs"]["endpoint_url"] == "http://minio:9000"
        assert fsspec_s3["key"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
        assert fsspec_s3["secret"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]


def test_health_checks_volumes_images_and_auth_are_production_shaped(services: dict[str, Any]) -> None:
    # the scheduler's healthcheck calls its health server: it must be enabled
    scheduler = services["airflow-scheduler"]
    assert "8974/health" in " ".join(scheduler["healthcheck"]["test"])
    assert env(scheduler)["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    # named volumes are handed to the image's user (uid 50000) by a root init step before use
    init = services["airflow-volumes-init"]
    assert init["user"] == "0:0" and "chown -R 50000:0 /opt/airflow/logs" in command(init)
    for name, svc in airflow_services(services).items():
        if name == "airflow-volumes-init":
            continue
        assert svc["user"] == "50000:0", name
        if name != "airflow-init":
            deps = services[name]["depends_on"]
            assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-init"]["depends_on"]["airflow-volumes-init"]["condition"] == (
        "service_completed_successfully"
    )
    # every third-party image pinned to a version
    for name, svc in services.items():
        image = svc.get("image", "")
        if image and not image.startswith("airflow-provider-amoro:"):
            tag = image.rpartition(":")[2]
            assert ":" in image and tag not in ("latest", "") and any(c.isdigit() for c in tag), (name, image)
    # the auth manager is chosen explicitly (and documented in the file's header)
    assert env(services["airflow-apiserver"])["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert "auth manager" in COMPOSE.read_text().split("services:")[0].lower()


def test_connection_parses_into_the_hook_and_points_at_compose_services(services: dict[str, Any]) -> None:
    from airflow.models.connection import Connection

    from airflow_provider_amoro.hooks.catalog import catalog_properties_from_connection

    raw = env(services["airflow-scheduler"])["AIRFLOW_CONN_AMORO_DEFAULT"]
    data = json.loads(raw)
    conn = Connection.from_json(raw, conn_id="amoro_default")
    assert conn.conn_type == "amoro" == data["conn_type"]
    name, props = catalog_properties_from_connection(conn)
    assert name == "amoro_default"
    assert props["type"] == "sql"
    assert props["uri"].startswith("postgresql+psycopg2://") and "@postgres:5432/" in props["uri"]
    catalog_db = props["uri"].rsplit("/", 1)[1].split("?")[0]  # the hook adds ?connect_timeout=…
    assert "connect_timeout=30" in props["uri"]
    init_sql = "\n".join(p.read_text() for p in (REPO / "docker" / "postgres-init").glob("*.sql"))
    assert f"CREATE DATABASE {catalog_db}" in init_sql
    postgres_mounts = [v.split(":")[0] for v in services["postgres"]["volumes"]]
    assert "./docker/postgres-init" in postgres_mounts
    # the warehouse bucket is the one minio-init creates, and S3 is MinIO with its credentials
    bucket = props["warehouse"].removeprefix("s3://").split("/")[0]
    assert f"local/{bucket}" in services["minio-init"]["entrypoint"]
    assert props["s3.endpoint"] == "http://minio:9000"
    minio_env = services["minio"]["environment"]
    assert props["s3.access-key-id"] == minio_env["MINIO_ROOT_USER"]
    assert props["s3.secret-access-key"] == minio_env["MINIO_ROOT_PASSWORD"]
    credentials = f"{minio_env['MINIO_ROOT_USER']} {minio_env['MINIO_ROOT_PASSWORD']}"
    assert credentials in services["minio-init"]["entrypoint"]


def test_init_job_migrates_and_creates_the_pools_through_the_cli(services: dict[str, Any]) -> None:
    from airflow_provider_amoro.dag_factory.__main__ import pool_commands

    init = command(services["airflow-init"])
    assert "airflow db migrate" in init
    assert "python -m airflow_provider_amoro.dag_factory pools --apply" in init
    config = load_config(REPO / "dags" / "amoro.yaml")
    assert pool_commands(config) == [
        ["airflow", "pools", "set", "amoro_optimizer_default", "2", "Amoro optimizer group 'default'"]
    ]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-worker-1"):
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully"


def test_dockerfile_installs_this_provider_with_the_extras_the_deployment_needs() -> None:
    import tomllib

    text = (REPO / "Dockerfile").read_text()
    airflow_version = re.search(r"ARG AIRFLOW_VERSION=(\S+)", text).group(1)  # type: ignore[union-attr]
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python", text, re.M)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    spec = next(d for d in project["dependencies"] if d.startswith("apache-airflow"))
    lo, hi = re.search(r">=([\d.]+),<([\d.]+)", spec).groups()  # type: ignore[union-attr]
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(lo) <= as_tuple(airflow_version) < as_tuple(hi)
    run = next(line for line in text.splitlines() if line.startswith("RUN pip install"))
    extras = re.search(r"/opt/amoro\[([a-z0-9,]+)\]", run).group(1).split(",")  # type: ignore[union-attr]
    for extra in extras:
        assert extra in project["optional-dependencies"], extra
    assert {"celery", "postgres", "s3"} <= set(extras)
    for src in re.findall(r"^COPY \S+ (.+) /opt/amoro/", text, re.M):
        for path in shlex.split(src):
            assert (REPO / path).exists(), path
