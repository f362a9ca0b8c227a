"""Time the parse of ``dags/amoro_dags.py`` in a fresh process (run by test_parse_time.py).

Usage: ``python parse_timing.py <dag file> [--dagbag <known pools, comma separated>]``; prints one JSON
line.

Airflow is imported before the clock starts, and so is the module the DAG file imports
(``airflow_provider_amoro.dag_factory``): the DAG processor has Airflow loaded and pre-imports a DAG
file's top-level imports before it parses the file (``[dag_processor] parsing_pre_import_modules``).
Everything the factory imports lazily (operators, triggers, pyiceberg) is inside the measurement.
The same process then times the floor (:func:`floor`): as many DAGs of as many plain tasks.
With ``--dagbag`` the file is also loaded through Airflow's ``DagBag`` (validation and cycle checks
included), as the DAG processor does.
"""

from __future__ import annotations

import itertools
import json
import runpy
import sys
import time

from airflow.providers.standard.operators.python import PythonOperator  # noqa: F401
from airflow.sdk import DAG  # loaded before timing, as in the DAG processor

import airflow_provider_amoro.dag_factory  # noqa: F401 - pre-imported, as by the DAG processor

ENGINE_PACKAGES = ("pyiceberg", "pyarrow")
"""Top-level packages the engine needs and a DAG parse does not (0.55 s of imports)."""

FLOOR_TASKS_PER_DAG = 11
"""Tasks of a generated table DAG (resolve, evaluate, plan, execute, commit, optimizing_failed and
five maintenance actions): the floor builds as many plain tasks per DAG."""


def floor(dags: int) -> float:
    """CPU seconds of the plainest way to make what the parse makes: ``dags`` DAGs of
    :data:`FLOOR_TASKS_PER_DAG` chained ``EmptyOperator`` tasks each.

    Airflow's own cost of a DAG and its operators, timed in the same process as the parse, so that
    the parse compares with it whatever the machine's speed or load.
    """
    import pendulum
    from airflow.providers.standard.operators.empty import EmptyOperator

    start_date = pendulum.datetime(2024, 1, 1, tz="UTC")
    made = []
    start = time.process_time()
    for i in range(dags):
        with DAG(dag_id=f"floor_{i}", schedule=None, start_date=start_date, catchup=False) as dag:
            tasks = [EmptyOperator(task_id=f"t{j}") for j in range(FLOOR_TASKS_PER_DAG)]
            for upstream, downstream in itertools.pairwise(tasks):
                upstream >> downstream
        made.append(dag)
    return time.process_time() - start


def main() -> None:
    path = sys.argv[1]
    wall, cpu = time.perf_counter(), time.process_time()
    namespace = runpy.run_path(path, run_name="amoro_dags_timed")
    out = {
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
        "dags": sum(1 for v in namespace.values() if isinstance(v, DAG)),
        # the engine's heavy dependencies: the tasks load them when they run, the parse must not
        "engine_modules": sorted(m for m in sys.modules if m.split(".")[0] in ENGINE_PACKAGES),
    }
    # after the parse, so that nothing the floor warms up shortens the parse
    out["floor_cpu_s"] = round(min(floor(int(out["dags"])) for _ in range(2)), 3)
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
