"""The engine (optimizing/, maintenance/) is usable without Airflow: importing it loads no Airflow module."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_no_airflow() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_amoro.optimizing, airflow_provider_amoro.maintenance\n"
        "import airflow_provider_amoro.testing.reader, airflow_provider_amoro.testing.deletes\n"
        "bad = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"the engine imported Airflow modules: {out.stdout.strip()}"


def test_public_engine_api_names() -> None:
    from airflow_provider_amoro import optimizing

    for name in ("OptimizingConfig", "evaluate", "plan", "execute", "commit", "optimize", "OptimizingPlan"):
        assert callable(getattr(optimizing, name)), name
