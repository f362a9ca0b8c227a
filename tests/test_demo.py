"""``make demo``'s program end to end: a small demo table, the generated DAG, the summary."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from airflow_fixtures import airflow_db  # noqa: F401 - fixture
from processes import run_captured

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("airflow_db")
def test_demo_builds_optimizes_and_reports_identical_rows(tmp_path: Path) -> None:
    """The demo writes many small commits, runs the generated DAG with ``dag.test()`` and prints
    before and after; the rows must be identical by the independent reader."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path),  # a fresh embedded lakehouse; the session's migrated DB
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )
    env.pop("AMORO_DAGS_CONFIG", None)
    done = run_captured(
        [sys.executable, "-m", "airflow_provider_amoro.demo", "--commits", "20", "--rows-per-commit", "100"],
        env=env,
        timeout=540,
        cwd=REPO,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    before, after = out.split("after optimizing")
    files_before = int(re.search(r"data files\s+(\d+)", before).group(1))  # type: ignore[union-attr]
    files_after = int(re.search(r"data files\s+(\d+)", after).group(1))  # type: ignore[union-attr]
    assert files_before >= 20 and files_after < files_before / 5, out
    assert re.search(r"delete files\s+0 ", after), out
    assert ": success in" in after, out
    match = re.search(r"live rows \(iceberg-rust\)\s+(\d+) before, (\d+) after, content identical", after)
    assert match and match.group(1) == match.group(2), out
    assert "warning" not in (out + done.stderr).lower(), out + done.stderr
    assert (tmp_path / "amoro").is_dir()
