"""Benchmark 4: DAG factory parse time of ``dags/amoro_dags.py`` for 1,000 tables (synthetic cache).

A discovery cache with 1,000 (``--quick``: 1,000 too, fewer repetitions) and, for scaling, 100
tables is written with the factory's own ``write_cache``; a YAML configuration manages all of them.
Each measurement is a fresh process, as Airflow's DAG processor parses a file in a fresh child:

- ``parse``: ``runpy.run_path("dags/amoro_dags.py")`` with Airflow's SDK pre-imported (the processor
  has it loaded) and this provider not (conservative);
- ``DagBag``: the same file through Airflow's ``DagBag`` (import, validation, cycle checks), as
  the DAG processor loads it;
- ``cold process``: a new interpreter importing nothing beforehand, for context.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, WORK, run_child

DAG_FILE = REPO / "dags" / "amoro_dags.py"
CONN = "amoro_default"


def _write_setup(root: Path, n_tables: int) -> dict[str, str]:
    from airflow_provider_amoro.dag_factory.cache import CachedTable, write_cache

    cache_dir = root / f"cache-{n_tables}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    tables = {}
    for i in range(n_tables):
        ident = f"ns{i % 10}.table_{i:04d}"
        tables[ident] = CachedTable(
            identifier=ident,
            properties={
                "self-optimizing.group": "default",
                "self-optimizing.target-size": str(128 * 1024 * 1024),
            },
            summary={"snapshot_id": 1000 + i, "total-data-files": str(10 + i % 90)},
            cost=(i * 7919) % 10_000_000_000,
            health=i % 101,
            pending=i % 3 == 0,
        )
    write_cache(cache_dir, CONN, tables)
    config = root / f"amoro-{n_tables}.yaml"
    config.write_text(
        f"""version: 1
cache_dir: {cache_dir}
catalogs:
  {CONN}:
    include: ["ns*.*"]
optimizer_groups:
  default:
    slots: 2
defaults:
  schedule: 1h
  watch_changes: true
"""
    )
    home = root / "airflow_home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "AMORO_DAGS_CONFIG": str(config),
        "AMORO_CACHE_DIR": str(cache_dir),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }


def child_parse(meter: Any, dag_file: str) -> dict[str, Any]:
    """runpy the DAG file with Airflow pre-imported."""
    import runpy

    import airflow.sdk  # noqa: F401 - loaded before timing, as in the DAG processor
    from airflow.providers.standard.operators.python import PythonOperator  # noqa: F401
    from airflow.sdk import DAG

    with meter.timed():
        namespace = runpy.run_path(dag_file, run_name="amoro_dags_bench")
    return {"dags": sum(1 for v in namespace.values() if isinstance(v, DAG))}


def child_dagbag(meter: Any, dag_file: str) -> dict[str, Any]:
    """Load the DAG file through Airflow's DagBag (Airflow pre-imported)."""
    from airflow.dag_processing.dagbag import DagBag

    with meter.timed():
        bag = DagBag(
            dag_folder=dag_file, safe_mode=False, known_pools={"amoro_optimizer_default", "default_pool"}
        )
    return {"dags": len(bag.dags), "import_errors": len(bag.import_errors)}


def _cold(env: dict[str, str]) -> tuple[float, int]:
    import os

    t0 = time.perf_counter()
    code = (
        f"import runpy; ns = runpy.run_path({str(DAG_FILE)!r}); from airflow.sdk import DAG; "
        "print(sum(isinstance(v, DAG) for v in ns.values()))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    dags = int(proc.stdout.strip().splitlines()[-1])
    return seconds, dags


def run(quick: bool = False) -> dict[str, Any]:
    """Run benchmark 4; return its JSON-safe result."""
    root = WORK / "dag_parse"
    reps = 3 if quick else 5
    cases = []
    for n in (100, 1000):
        env = _write_setup(root, n)
        case: dict[str, Any] = {"tables": n, "results": {}}
        for step, target in (("parse", "child_parse"), ("DagBag", "child_dagbag")):
            runs = [
                run_child(f"benchmarks.bench_dag_parse:{target}", {"dag_file": str(DAG_FILE)}, env=env)
                for _ in range(reps)
            ]
            best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            case["results"][step] = {**best, "all_seconds": [r["seconds"] for r in runs]}
        cold = [_cold(env) for _ in range(reps)]
        case["results"]["cold process"] = {
            "seconds": statistics.median(c[0] for c in cold),
            "dags": cold[0][1],
        }
        cases.append(case)
        print(
            f"  {n} tables: " + ", ".join(f"{k} {v['seconds']:.2f}s" for k, v in case["results"].items()),
            flush=True,
        )
    return {"name": "dag_parse", "quick": quick, "median_of": reps, "cases": cases}


def summarize(result: dict[str, Any]) -> list[str]:
    """Markdown lines for results.md."""
    cmd = "python -m benchmarks.run --only dag_parse" + (" --quick" if result.get("quick") else "")
    out = [
        f"Reproduce: `{cmd}` (median of {result['median_of']} fresh processes each).",
        "",
        "| cached tables | step | wall s | CPU s | load (1 min) | DAGs | peak RSS MB "
        "| goal (< 2 s for 1,000 tables) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in result["cases"]:
        for step, r in case["results"].items():
            goal = (
                ("✅" if r["seconds"] < 2 else "❌")
                if case["tables"] == 1000 and step != "cold process"
                else ""
            )
            rss = f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else ""
            cpu = f"{r['cpu_seconds']:.2f}" if "cpu_seconds" in r else ""
            load = f"{r['load_avg_1m']:.1f}" if "load_avg_1m" in r else ""
            out.append(
                f"| {case['tables']:,} | {step} | {r['seconds']:.2f} | {cpu} | {load} | {r.get('dags', '')} "
                f"| {rss} | {goal} |"
            )
    out += [
        "",
        "`parse`: runpy of the DAG file with Airflow's SDK pre-imported (as in the DAG processor), the "
        "provider not; `DagBag`: Airflow's own loader (parse + validation), Airflow pre-imported; "
        "`cold process`: interpreter start + every import + parse (dominated by importing Airflow). "
        "Parsing is single-threaded, so on an idle machine wall ≈ CPU seconds; under load the CPU "
        "column is the steadier figure.",
    ]
    return out


def plot(result: dict[str, Any], folder: Path) -> list[str]:
    """No plot for this one (a table says it all)."""
    return []
