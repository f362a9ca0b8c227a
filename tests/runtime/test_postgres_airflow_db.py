"""The split operators and the runtime readers with Airflow's metadata DB on PostgreSQL.

The session's Airflow DB is chosen before Airflow is imported, so this runs the SQLite-session tests
again in a child pytest whose Airflow DB is a fresh PostgreSQL database.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from processes import run_captured

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_split_trio_and_readers_on_postgres_airflow_db(pg_database: str) -> None:
    import psycopg2

    base = pg_database.rsplit("/", 1)[0]
    name = f"amoro_airflow_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(base.replace("postgresql+psycopg2", "postgresql") + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AMORO_TEST"))}
    env["AMORO_TEST_AIRFLOW_DB"] = f"{base}/{name}"
    try:
        proc = run_captured(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:randomly",
                "tests/operators/test_optimizing.py::test_split_trio_optimizes_records_state_and_emits_event",
                "tests/runtime/test_reader.py::test_a_dead_run_never_leaves_a_running_process",
            ],
            env=env,
            timeout=600,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "2 passed" in proc.stdout
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
