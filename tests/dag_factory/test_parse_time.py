"""Parsing ``dags/amoro_dags.py`` with 1,000 cached tables: under 3 s, and no catalog contacted.

The cache is synthetic (1,000 tables with properties and costs); the configuration is the example
``dags/amoro.yaml`` with watchers on and the default maintenance actions, pointed at an
unreachable catalog connection, so any catalog call during parsing would fail the parse. Each
measurement is a fresh Python process (``parse_timing.py``); the best of three is compared with
the 3 s budget (see the test for how an overloaded or slower machine is accounted for: a fixed
piece of Python work timed in the same process). Every table DAG has
the same 11 tasks whatever its properties (resolve, the optimizing pipeline, its failure outcome and
all five maintenance actions, which skip when off), so a worker on another host parses the DAG the
scheduler saw; that costs about 2.2 s of CPU per 1,000 tables here, far under a third of Airflow's
``dag_file_processor_timeout`` (50 s). Larger catalogs split over files with ``shards``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from processes import run_captured

from airflow_provider_amoro.dag_factory.cache import CachedTable, write_cache

REPO = Path(__file__).resolve().parents[2]
TABLES = 1000
BUDGET_S = 3.0
#: ``calibration_cpu_s`` (parse_timing.py) on a machine that parses 1,000 tables in about 2.2 s of
#: CPU. Measured on the 2-core Xeon VM of 2026-11-30: the parse took 10-12x the calibration
#: (3.5-4.7 s against 0.27-0.45 s), so 2.2 s of parse goes with about 0.2 s of calibration.
CALIBRATION_REFERENCE_S = 0.2


@pytest.fixture
def thousand_tables(tmp_path: Path) -> dict[str, str]:
    cache = tmp_path / "cache"
    tables = {
        f"demo.t{i:04d}": CachedTable(
            identifier=f"demo.t{i:04d}",
            properties={"self-optimizing.quota": "0.5"} if i % 2 else {"self-optimizing.group": "default"},
            summary={"snapshot_id": i, "total-data-files": str(i)},
            cost=i * 3 * 1024 * 1024,
            health=100 - i % 100,
            pending=bool(i % 3),
        )
        for i in range(TABLES)
    }
    write_cache(cache, "amoro_default", tables)
    config = (REPO / "dags" / "amoro.yaml").read_text()
    cfg = tmp_path / "amoro.yaml"
    cfg.write_text(config.replace("version: 1", f"version: 1\ncache_dir: {cache}", 1))
    unreachable = json.dumps(
        {
            "conn_type": "amoro",
            "extra": {"catalog_type": "sql", "uri": "postgresql+psycopg2://nobody@127.0.0.1:1/none"},
        }
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update({"AMORO_DAGS_CONFIG": str(cfg), "AIRFLOW_CONN_AMORO_DEFAULT": unreachable})
    return env


def measure(env: dict[str, str], *extra: str) -> dict[str, float]:
    script = Path(__file__).with_name("parse_timing.py")
    done = run_captured(
        [sys.executable, str(script), str(REPO / "dags" / "amoro_dags.py"), *extra],
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_parsing_1000_tables_takes_under_two_seconds(thousand_tables: dict[str, str]) -> None:
    runs = [measure(thousand_tables) for _ in range(3)]
    for r in runs:
        assert r["dags"] == TABLES + 1  # every table plus amoro__catalog_sync
    best_wall = min(r["wall_s"] for r in runs)
    best_cpu = min(r["cpu_s"] for r in runs)
    print(
        f"\nparse of dags/amoro_dags.py with {TABLES} tables: wall {[r['wall_s'] for r in runs]} s, "
        f"cpu {[r['cpu_s'] for r in runs]} s (best wall {best_wall} s, best cpu {best_cpu} s)"
    )
    # CPU time equals wall time on an idle machine. When more processes want the cores than there
    # are (other test suites beside this one), both are inflated by context switches and cache
    # misses that have nothing to do with the parse; and a slower machine (or a virtual one whose
    # host is busy) runs the same Python slower. The budget scales with both (at most 3x): the load
    # average per core, and a fixed piece of pure-Python work timed in the same process
    # (``calibration_cpu_s``) against what it takes where the budget was set. A real regression (the
    # parse doubling against the calibration) still fails.
    overload = os.getloadavg()[0] / (os.cpu_count() or 1)
    slowness = min(r["calibration_cpu_s"] for r in runs) / CALIBRATION_REFERENCE_S
    budget = BUDGET_S * min(3.0, max(1.0, overload, slowness))
    print(f"load average / cores = {overload:.1f}, Python {slowness:.2f}x slower: budget {budget:.1f} s")
    assert best_cpu < budget, (runs, overload, slowness)
    if overload < 1:
        assert best_wall < BUDGET_S * min(3.0, max(1.0, slowness)), (runs, overload, slowness)
