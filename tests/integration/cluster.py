"""A real Airflow deployment in subprocesses, for integration tests.

``AirflowCluster`` starts, against a fresh PostgreSQL metadata database: ``airflow api-server``
(the Execution API that task processes talk to), ``airflow dag-processor``, ``airflow scheduler``
and, for the CeleryExecutor, ``airflow celery worker`` processes with distinct hostnames (their
task instances record ``worker-<n>`` as hostname through a custom ``hostname_callable``). Every
process runs in its own session so that teardown (and the SIGKILL test) can kill it with all its
children. Ports, database names, Redis DB index and Celery queue are unique per cluster, so
clusters of parallel test runs never meet.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyiceberg.catalog import Catalog

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")

HOSTNAME_MODULE = """
import os


def hostname():
    return os.environ.get("AMORO_TEST_HOSTNAME") or "cluster-host"
"""


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_connect(dbname: str) -> Any:
    """A psycopg2 connection to the test PostgreSQL server (127.0.0.1:5432, user postgres)."""
    import psycopg2

    return psycopg2.connect(
        host=os.environ.get("AMORO_TEST_PG_HOST", "127.0.0.1"),
        port=int(os.environ.get("AMORO_TEST_PG_PORT", "5432")),
        user=os.environ.get("AMORO_TEST_PG_USER", "postgres"),
        dbname=dbname,
        connect_timeout=5,
    )


def create_database(prefix: str, template: str | None = None) -> str:
    """Create a fresh PostgreSQL database (a copy of ``template`` if given) and return its name."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn = pg_connect("postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        suffix = f' TEMPLATE "{template}"' if template else ""
        cur.execute(f'CREATE DATABASE "{name}"{suffix}')
    conn.close()
    return name


_TEMPLATE: dict[str, str] = {}


def migrated_template() -> str:
    """A database with Airflow's schema, migrated once per test process and copied per cluster.

    ``airflow db migrate`` takes half a minute on a busy machine; ``CREATE DATABASE ... TEMPLATE``
    takes a second. Dropped at interpreter exit.
    """
    if "name" not in _TEMPLATE:
        import atexit

        name = create_database("amoro_it_template")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        home = Path(tempfile.mkdtemp(prefix="amoro-it-migrate-"))
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url(name),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(home),
            }
        )
        done = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        shutil.rmtree(home, ignore_errors=True)
        if done.returncode != 0:
            drop_database(name)
            raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        atexit.register(drop_database, name)
        _TEMPLATE["name"] = name
    return _TEMPLATE["name"]


def drop_database(name: str) -> None:
    """Drop a database created by :func:`create_database` (connections are terminated)."""
    conn = pg_connect("postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def pg_url(dbname: str, driver: str = "postgresql+psycopg2") -> str:
    """SQLAlchemy URL of a database on the test server."""
    user = os.environ.get("AMORO_TEST_PG_USER", "postgres")
    host = os.environ.get("AMORO_TEST_PG_HOST", "127.0.0.1")
    port = os.environ.get("AMORO_TEST_PG_PORT", "5432")
    return f"{driver}://{user}@{host}:{port}/{dbname}"


@dataclass
class Proc:
    """One started Airflow process."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> list[int]:
    """Send ``sig`` to a process and all its descendants; returns the pids signalled."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)
    return [p.pid for p in procs]


class AirflowCluster:
    """Airflow components in subprocesses sharing one fresh PostgreSQL metadata DB.

    Args:
        home: an empty directory for ``AIRFLOW_HOME`` (dags folder, logs, config).
        executor: ``LocalExecutor`` or ``CeleryExecutor``.
        dag_files: files to copy into the DAGs folder.
        extra_env: more environment variables (connections, ``AMORO_DAGS_CONFIG``...).
        celery_workers: how many Celery workers to start (CeleryExecutor only).
        worker_concurrency: task slots per Celery worker.
        triggerer: also start ``airflow triggerer`` (runs the AssetWatchers' triggers).
        separate_homes: give every component its own ``AIRFLOW_HOME`` (``<home>/host-<name>``: its
            own logs, config and local files), as on separate machines; only the DAGs folder
            (``<home>/dags``) is common, plus whatever the test shares on purpose.

    Airflow's own default applies: DAGs are paused at creation unless they say otherwise (the
    generated DAGs do).
    """

    def __init__(
        self,
        home: Path,
        *,
        executor: str,
        dag_files: Iterable[Path],
        extra_env: Mapping[str, str] | None = None,
        celery_workers: int = 0,
        worker_concurrency: int = 1,
        triggerer: bool = False,
        separate_homes: bool = False,
    ) -> None:
        self.home = home
        self.separate_homes = separate_homes
        self.executor = executor
        self.procs: list[Proc] = []
        self.workers: dict[str, Proc] = {}
        self.celery_workers = celery_workers
        self.triggerer = triggerer
        self.worker_concurrency = worker_concurrency
        self.db_name = create_database("amoro_it_airflow", template=migrated_template())
        self.db_url = pg_url(self.db_name)
        self.api_port = free_port()
        dags = home / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        for f in dag_files:
            shutil.copy(f, dags / f.name)
        pylib = home / "pylib"
        pylib.mkdir(exist_ok=True)
        (pylib / "amoro_test_hostname.py").write_text(HOSTNAME_MODULE)
        self.queue = f"amoro_it_{uuid.uuid4().hex[:8]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "PYTHONPATH": os.pathsep.join([str(pylib), str(REPO)]),
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                "AIRFLOW__CORE__EXECUTOR": executor,
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "amoro_test_hostname.hostname",
                "AIRFLOW__CORE__PARALLELISM": "16",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__WORKERS": "1",
                # configuration every host must share (each would otherwise generate its own): the
                # Fernet key encrypts connections and trigger arguments, the JWT secret signs the
                # task tokens the workers present to the API server
                "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
                "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
                "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                # The task supervisor can miss its task process's exit by one select() timeout
                # (``min_heartbeat_interval``, 5 s by default) and hold the worker slot that long;
                # with sub-second execute tasks one worker would then take them all.
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            }
        )
        if executor == "CeleryExecutor":
            redis_db = int(uuid.uuid4().int % 14) + 1
            env["AIRFLOW__CELERY__BROKER_URL"] = f"redis://127.0.0.1:6379/{redis_db}"
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + pg_url(self.db_name)
            env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(worker_concurrency)
            env["AIRFLOW__CELERY__DEFAULT_QUEUE"] = self.queue
        env.update(extra_env or {})
        self.env = env

    # ---- process management ---------------------------------------------------------------------

    def run_cli(self, *args: str, timeout: float = 180, env: Mapping[str, str] | None = None) -> str:
        """Run an ``airflow`` CLI command to completion; returns stdout (raises with output on failure)."""
        done = subprocess.run(
            [AIRFLOW, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            out = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{out}")
        return done.stdout

    def spawn(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Proc:
        """Start ``airflow <args>`` in its own session, output to ``<home>/<name>.log``."""
        log = self.home / f"{name}.log"
        own: dict[str, str] = {}
        if self.separate_homes:
            host_home = self.home / f"host-{name}"
            host_home.mkdir(parents=True, exist_ok=True)
            own["AIRFLOW_HOME"] = str(host_home)
        fh = log.open("wb")
        popen = subprocess.Popen(
            [AIRFLOW, *args],
            env={**self.env, **own, **(env or {})},
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        fh.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def apply_pools(self, config: Path) -> str:
        """Create the optimizer groups' pools the documented way: the factory CLI's ``pools --apply``."""
        cli = [sys.executable, "-m", "airflow_provider_amoro.dag_factory", "--config", str(config)]
        done = subprocess.run(
            [*cli, "pools", "--apply"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pools --apply failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def pools(self) -> dict[str, int]:
        """Pools in the metadata DB with their slots."""
        return {str(r[0]): int(r[1]) for r in self.query("SELECT pool, slots FROM slot_pool")}

    def start(self) -> None:
        """Start all components; wait for the API server and every Celery worker to be ready.

        A worker still importing Airflow when the first tasks are queued would miss them, and its
        peer would run them all; so each worker must have connected to the broker and logged
        ``ready.`` before this returns (the DB is already migrated).
        """
        self.spawn("api-server", "api-server", "--port", str(self.api_port), "--host", "127.0.0.1")
        self.spawn("dag-processor", "dag-processor")
        self.spawn("scheduler", "scheduler")
        if self.triggerer:
            self.spawn("triggerer", "triggerer")
        for i in range(1, self.celery_workers + 1):
            name = f"worker-{i}"
            self.workers[name] = self.spawn(
                name,
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}-{self.queue}@%h",
                "--concurrency",
                str(self.worker_concurrency),
                "--queues",
                self.queue,
                "--skip-serve-logs",
                "--without-gossip",
                "--without-mingle",
                env={"AMORO_TEST_HOSTNAME": name},
            )
        self.wait(self._api_up, timeout=120, what="the API server to answer")
        self.wait(self._workers_ready, timeout=180, what=f"Celery workers {sorted(self.workers)} to be ready")

    def _workers_ready(self) -> bool:
        return all(" ready." in self.tail(name, chars=1_000_000) for name in self.workers)

    def _api_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.api_port), timeout=1):
                return True
        except OSError:
            return False

    def check_alive(self) -> None:
        """Raise when a component exited (with the end of its log)."""
        for proc in self.procs:
            code = proc.popen.poll()
            if code is not None and proc.name not in self.killed:
                raise RuntimeError(f"{proc.name} exited with {code}:\n{self.tail(proc.name)}")

    killed: set[str] = set()

    def kill(self, name: str) -> list[int]:
        """SIGKILL a component and all its children (e.g. a Celery worker mid-task)."""
        self.killed = {*self.killed, name}
        proc = next(p for p in self.procs if p.name == name)
        pids = kill_tree(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(timeout=30)
        return pids

    def tail(self, name: str, chars: int = 4000) -> str:
        """The end of a component's log."""
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def logs(self) -> str:
        """Ends of all component logs, for failure messages."""
        return "\n".join(f"===== {p.name}\n{self.tail(p.name, 2500)}" for p in self.procs)

    def stop(self) -> None:
        """Terminate every component (SIGTERM, then SIGKILL), then drop the metadata DB."""
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                kill_tree(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            kill_tree(proc.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=10)
        try:
            drop_database(self.db_name)
        except Exception as exc:  # noqa: BLE001 - teardown must go on
            print(f"could not drop {self.db_name}: {exc}")

    # ---- waiting and querying -------------------------------------------------------------------

    def wait(self, cond: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.5) -> Any:
        """Poll ``cond`` until it returns a truthy value; fail with all logs after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            value = cond()
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read query on the metadata DB."""
        conn = pg_connect(self.db_name)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120) -> None:
        """Wait until the DAG processor has serialized all ``dag_ids``."""
        wanted = set(dag_ids)

        def ready() -> bool:
            try:
                rows = self.query("SELECT dag_id FROM serialized_dag")
            except Exception:  # noqa: BLE001 - tables may not be visible yet
                return False
            return wanted <= {r[0] for r in rows}

        self.wait(ready, timeout=timeout, what=f"DAGs {sorted(wanted)} to be parsed", interval=1)

    def import_errors(self) -> list[tuple[Any, ...]]:
        """Import errors the DAG processor recorded."""
        return self.query("SELECT filename, stacktrace FROM import_error")

    def is_paused(self, dag_id: str) -> bool | None:
        """Whether a DAG is paused in the metadata DB (None while it is not there)."""
        rows = self.query("SELECT is_paused FROM dag WHERE dag_id=%s", (dag_id,))
        return bool(rows[0][0]) if rows else None

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """All runs of a DAG, oldest first (run_id, run_type, state)."""
        rows = self.query(
            "SELECT run_id, run_type, state FROM dag_run WHERE dag_id=%s ORDER BY id", (dag_id,)
        )
        return [{"run_id": r[0], "run_type": r[1], "state": r[2]} for r in rows]

    def asset_state(self, uri: str, key: str) -> Any:
        """A value of an asset's state store (JSON-decoded), None when absent."""
        rows = self.query(
            "SELECT s.value FROM asset_state_store s JOIN asset a ON a.id = s.asset_id "
            "WHERE a.uri = %s AND s.key = %s",
            (uri, key),
        )
        return json.loads(rows[0][0]) if rows else None

    def asset_event_count(self, uri: str) -> int:
        """Number of events of the asset with ``uri``."""
        rows = self.query(
            "SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = %s", (uri,)
        )
        return int(rows[0][0])

    def trigger(self, dag_id: str, run_id: str | None = None) -> str:
        """Trigger a DAG run with the CLI; returns its run id."""
        run_id = run_id or f"it_{uuid.uuid4().hex[:10]}"
        self.run_cli("dags", "trigger", dag_id, "--run-id", run_id)
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        """State of a DAG run (None while it does not exist)."""
        rows = self.query("SELECT state FROM dag_run WHERE dag_id=%s AND run_id=%s", (dag_id, run_id))
        return rows[0][0] if rows else None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180) -> str:
        """Wait until the run is finished; returns its final state."""

        def done() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return str(self.wait(done, timeout=timeout, what=f"{dag_id}/{run_id} to finish", interval=1))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Task instances of a run (task_id, map_index, state, hostname, start/end, try_number, pool)."""
        rows = self.query(
            "SELECT task_id, map_index, state, hostname, start_date, end_date, try_number, pool "
            "FROM task_instance WHERE dag_id=%s AND run_id=%s ORDER BY task_id, map_index",
            (dag_id, run_id),
        )
        keys = ("task_id", "map_index", "state", "hostname", "start_date", "end_date", "try_number", "pool")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def task_tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Earlier tries of a task (from ``task_instance_history``)."""
        rows = self.query(
            "SELECT map_index, try_number, state, hostname FROM task_instance_history "
            "WHERE dag_id=%s AND run_id=%s AND task_id=%s ORDER BY map_index, try_number",
            (dag_id, run_id, task_id),
        )
        keys = ("map_index", "try_number", "state", "hostname")
        return [dict(zip(keys, r, strict=True)) for r in rows]


def connection_env(conn_id: str, catalog: Catalog) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` for a pyiceberg SQL catalog (its name, URI and warehouse)."""
    from airflow_fixtures import catalog_connection

    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(catalog_connection(catalog))}
