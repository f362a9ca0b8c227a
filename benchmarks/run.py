"""Run the benchmarks and write ``benchmarks/results/results.md`` and PNG plots.

Usage::

    python -m benchmarks.run                 # all benchmarks (make bench)
    python -m benchmarks.run --only compaction
    python -m benchmarks.run --quick         # smaller data, one repetition: a smoke run

Each benchmark's raw result is kept as ``results/<name>.json``; ``results.md`` is rebuilt from all
of them, so ``--only`` refreshes one section and keeps the others (each section says when and how
it was measured).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
import time
from typing import Any

from benchmarks.common import RESULTS, machine_info

BENCHMARKS = {
    "compaction": ("benchmarks.bench_compaction", "1. Compaction throughput"),
    "streaming": ("benchmarks.bench_streaming", "2. Streaming ingest: query time under upserts"),
    "planning": ("benchmarks.bench_planning", "3. Planning at scale"),
    "dag_parse": ("benchmarks.bench_dag_parse", "4. DAG factory parse time"),
    "history": ("benchmarks.bench_history", "5. Compaction of tables with a long commit history"),
    "dag_scale": ("benchmarks.bench_dag_scale", "6. Parse + serialize at 1,000 and 10,000 tables"),
    "xcom_bytes": ("benchmarks.bench_xcom_bytes", "7. Bytes through XCom per mapped execute task"),
    "watchers": ("benchmarks.bench_watchers", "8. 1,000 table watchers in one triggerer process"),
}


def _git_commit() -> str:
    """The repository's HEAD commit (short) and whether the engine had uncommitted changes."""
    import subprocess

    from benchmarks.common import REPO

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "airflow_provider_amoro")
    return head + (" + uncommitted engine changes" if dirty else "")


def write_markdown() -> None:
    """Rebuild results.md from every results/<name>.json present."""
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m benchmarks.run` (`make bench`). Every ratio compares runs made in ONE",
        "invocation on the same data and machine; the command beside each section reproduces it.",
        "See `benchmarks/README.md` for method, goals and the analysis of misses.",
        "",
    ]
    for name, (module_name, title) in BENCHMARKS.items():
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        module = importlib.import_module(module_name)
        m = result.get("machine", {})
        try:
            body = module.summarize(result)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            body = [
                f"(results/{name}.json could not be summarised: {type(exc).__name__}: {exc}; run it again)"
            ]
        lines += [
            f"## {title}",
            "",
            f"Measured {result.get('measured_at', '?')} in {result.get('wall_s', 0):.0f} s "
            f"on {m.get('cores')} cores "
            f"({m.get('cpu')}, {m.get('memory_gb')} GB); code at {result.get('git_commit', '?')}; "
            f"versions {m.get('versions')}.",
            "",
            *body,
            "",
        ]
        for png in result.get("plots", []):
            lines += [f"![{name}]({png})", ""]
    (RESULTS / "results.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only this benchmark")
    parser.add_argument("--quick", action="store_true", help="small data, one repetition (smoke run)")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = args.only or list(BENCHMARKS)
    failed = []
    for name in names:
        module_name, title = BENCHMARKS[name]
        print(f"== {title}{' (quick)' if args.quick else ''}", flush=True)
        module = importlib.import_module(module_name)
        t0 = time.perf_counter()
        try:
            result: dict[str, Any] = module.run(quick=args.quick)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other benchmarks
            print(f"   FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed.append(name)
            continue
        result["wall_s"] = time.perf_counter() - t0
        result["measured_at"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        result["machine"] = machine_info()
        result["git_commit"] = _git_commit()
        result["plots"] = module.plot(result, RESULTS)
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
        print(f"   done in {result['wall_s']:.0f} s", flush=True)
        write_markdown()
    print(f"results: {RESULTS / 'results.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
