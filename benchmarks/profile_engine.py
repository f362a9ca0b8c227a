"""Profile the engine on the benchmark data, to tell where its time goes.

Usage::

    python -m benchmarks.profile_engine compaction --dataset large --deletes   # plan+execute+commit
    python -m benchmarks.profile_engine planning --files 100000                # evaluate + plan
    python -m benchmarks.profile_engine history --commits 1000                 # optimize() on a long history
    python -m benchmarks.profile_engine dag_parse --tables 1000                 # the DAG file's parse

Writes a pyinstrument text report to ``benchmarks/results/profiles/<name>.txt`` and prints the
functions with the most own time (the figures quoted in benchmarks/README.md come from here).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, WORK, engine_api, make_catalog, warm


def _profile(name: str, func: Any) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.002)
    t0 = time.perf_counter()
    profiler.start()
    func()
    profiler.stop()
    wall = time.perf_counter() - t0
    out = RESULTS / "profiles"
    out.mkdir(parents=True, exist_ok=True)
    text = profiler.output_text(unicode=False, color=False, show_all=False, timeline=False)
    (out / f"{name}.txt").write_text(f"wall {wall:.2f} s\n\n{text}")
    print(f"wall {wall:.2f} s -> {out / (name + '.txt')}")
    _top_own_time(profiler, name)


def _top_own_time(profiler: Any, name: str, n: int = 15) -> None:
    """Print the frames with the most self time (file:function), as % of the total."""
    session = profiler.last_session
    root = session.root_frame()
    totals: dict[str, float] = {}

    def walk(frame: Any, parent_key: str) -> None:
        # pyinstrument puts a frame's own time in synthetic children named "[self]", "[await]"...
        synthetic = (frame.function or "").startswith("[")
        key = parent_key if synthetic else f"{Path(frame.file_path or '?').name}:{frame.function}"
        own = frame.time - sum(c.time for c in frame.children)
        totals[key] = totals.get(key, 0.0) + own
        for child in frame.children:
            walk(child, key)

    walk(root, "?")
    total = root.time or 1.0
    lines = [f"{v / total:6.1%}  {k}" for k, v in sorted(totals.items(), key=lambda kv: -kv[1])[:n]]
    (RESULTS / "profiles" / f"{name}.self.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def profile_compaction(dataset: str, deletes: bool) -> None:
    """plan + execute + commit on a fresh table of the compaction benchmark's data."""
    from benchmarks.bench_compaction import datasets, prepare

    ds = next(d for d in datasets(quick=False) if d["name"] == dataset)
    root = WORK / "profile-compaction"
    prep = prepare(root, ds, deletes)
    warm(prep["files"] + prep["delete_files"])
    eng = engine_api()
    table = make_catalog(root).load_table(prep["ident"])

    def work() -> None:
        p = eng.plan(table)
        results = [eng.execute(table, t) for t in p.tasks]
        eng.commit(table, p, results)

    _profile(f"compaction-{dataset}-{'posdel' if deletes else 'plain'}", work)


def profile_planning(files: int) -> None:
    """evaluate + plan on a metadata-only table of the planning benchmark."""
    from benchmarks.bench_planning import build

    root = WORK / "profile-planning"
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    built = build(root, files)
    eng = engine_api()
    table = make_catalog(root).load_table(built["ident"])
    _profile(f"evaluate-{files}", lambda: eng.evaluate(table))
    _profile(f"plan-{files}", lambda: eng.plan(table))


def profile_history(commits: int) -> None:
    """``load_table`` + ``optimize(table, "minor")`` on the history benchmark table of ``commits`` commits."""
    import uuid

    from benchmarks.bench_history import NAMESPACE, prepare

    root = WORK / "history"
    info = prepare(root, commits, 200 if commits == 1 else 1)
    shape = Path(info["delta_base"]).parent
    catalog = make_catalog(shape)
    ident = f"{NAMESPACE}.profile_{uuid.uuid4().hex[:8]}"
    catalog.register_table(ident, info["metadata_location"])
    from airflow_provider_amoro.optimizing import optimize

    try:
        _profile(f"history-{commits}-first", lambda: optimize(catalog.load_table(ident), "minor"))
    finally:
        catalog.drop_table(ident)


def profile_dag_parse(tables: int) -> None:
    """Parse ``dags/amoro_dags.py`` with a synthetic cache of ``tables`` tables (Airflow pre-imported)."""
    import os
    import runpy

    import airflow.sdk  # noqa: F401 - loaded before profiling, as in the DAG processor
    from airflow.providers.standard.operators.python import PythonOperator  # noqa: F401

    from benchmarks.bench_dag_parse import DAG_FILE, _write_setup

    os.environ.update(_write_setup(WORK / "profile-dag-parse", tables))
    _profile(f"dag-parse-{tables}", lambda: runpy.run_path(str(DAG_FILE), run_name="amoro_dags_profile"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("compaction")
    c.add_argument("--dataset", choices=["small", "large"], default="large")
    c.add_argument("--deletes", action="store_true")
    p = sub.add_parser("planning")
    p.add_argument("--files", type=int, default=100_000)
    h = sub.add_parser("history")
    h.add_argument("--commits", type=int, default=1000)
    d = sub.add_parser("dag_parse")
    d.add_argument("--tables", type=int, default=1000)
    args = parser.parse_args()
    if args.what == "compaction":
        profile_compaction(args.dataset, args.deletes)
    elif args.what == "planning":
        profile_planning(args.files)
    elif args.what == "history":
        profile_history(args.commits)
    else:
        profile_dag_parse(args.tables)


if __name__ == "__main__":
    main()
