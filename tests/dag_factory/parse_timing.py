"""Time the parse of ``dags/amoro_dags.py`` in a fresh process (run by test_parse_time.py).

Usage: ``python parse_timing.py <dag file> [--dagbag <known pools, comma separated>]``; prints one JSON
line.

Airflow is imported before the clock starts, and so is the module the DAG file imports
(``airflow_provider_amoro.dag_factory``): the DAG processor has Airflow loaded and pre-imports a DAG
file's top-level imports before it parses the file (``[dag_processor] parsing_pre_import_modules``).
Everything the factory imports lazily (operators, triggers, pyiceberg) is inside the measurement.
With ``--dagbag`` the file is also loaded through Airflow's ``DagBag`` (validation and cycle checks
included), as the DAG processor does.
"""

from __future__ import annotations

import json
import runpy
import sys
import time

from airflow.providers.standard.operators.python import PythonOperator  # noqa: F401
from airflow.sdk import DAG  # loaded before timing, as in the DAG processor

import airflow_provider_amoro.dag_factory  # noqa: F401 - pre-imported, as by the DAG processor

CALIBRATION_ITERATIONS = 1_000_000


def calibrate() -> float:
    """CPU seconds of a fixed piece of pure-Python work (small dicts and strings, as a parse makes):
    how fast this machine runs Python right now, to compare the parse with."""
    start = time.process_time()
    total = 0
    for i in range(CALIBRATION_ITERATIONS):
        item = {"name": f"t{i}", "value": i}
        total += len(item["name"])
    return time.process_time() - start


def main() -> None:
    path = sys.argv[1]
    before = calibrate()
    wall, cpu = time.perf_counter(), time.process_time()
    namespace = runpy.run_path(path, run_name="amoro_dags_timed")
    out = {
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
        "dags": sum(1 for v in namespace.values() if isinstance(v, DAG)),
        "calibration_cpu_s": round((before + calibrate()) / 2, 4),
    }
    if "--dagbag" in sys.argv:
        from airflow.dag_processing.dagbag import DagBag

        wall, cpu = time.perf_counter(), time.process_time()
        pools = set(sys.argv[sys.argv.index("--dagbag") + 1].split(","))
        bag = DagBag(dag_folder=path, safe_mode=False, known_pools=pools)
        out["dagbag_wall_s"] = round(time.perf_counter() - wall, 3)
        out["dagbag_cpu_s"] = round(time.process_time() - cpu, 3)
        out["dagbag_dags"] = len(bag.dags)
        out["import_errors"] = {k: v[-500:] for k, v in bag.import_errors.items()}
        from airflow.serialization.serialized_objects import LazyDeserializedDAG

        wall = time.perf_counter()
        for dag in bag.dags.values():
            LazyDeserializedDAG.from_dag(dag)
        out["serialize_wall_s"] = round(time.perf_counter() - wall, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
