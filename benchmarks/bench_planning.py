"""Benchmark 3: evaluate and plan time and peak memory for tables of 10,000 and 100,000 data files.

The tables hold metadata only: manifests are written with pyiceberg's ``fast_append`` (1,000 data
files per commit, so 100 manifests for 100,000 files, as a streaming writer leaves them) and the
files they name do not exist, which planning must not need. 100 identity partitions; sizes are a
deterministic mix of fragments (70 %), undersized segments (20 %) and target-size files (10 %);
1 % as many delete files (half equality deletes on ``id``, half position deletes whose
``file_path`` bounds name one data file), committed as RowDelta snapshots.

Measured, each in its own process: ``evaluate(table)``, ``plan(table)``, the engine's manifest scan
``optimizing.scan.live_files`` they build on, and for reference a floor that only reads every live
manifest entry with pyiceberg (8 threads, no optimizing logic).
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.common import MB, WORK, engine_api, make_catalog, run_child

NAMESPACE = "bench"
PARTITIONS = 100
FILES_PER_COMMIT = 1000


def sizes(quick: bool) -> list[tuple[int, int]]:
    """Table sizes: (data files, data files per commit). The last case has one manifest per
    10 files (10,000 manifests for 100,000 files), as a table written by a streaming job."""
    if quick:
        return [(2_000, FILES_PER_COMMIT), (20_000, FILES_PER_COMMIT), (20_000, 10)]
    return [(10_000, FILES_PER_COMMIT), (100_000, FILES_PER_COMMIT), (100_000, 10)]


def _file_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.7:
        return rng.randint(100_000, 15 * MB)  # fragments (<= 16 MB)
    if r < 0.9:
        return rng.randint(20 * MB, 90 * MB)  # undersized segments (<= 96 MB)
    return rng.randint(100 * MB, 140 * MB)  # target-size segments


def build(root: Path, n_files: int, per_commit: int = FILES_PER_COMMIT) -> dict[str, Any]:
    """Create the table's metadata (not timed); return its identifier and build time.

    With ``per_commit`` below :data:`FILES_PER_COMMIT` the metadata is written directly
    (:func:`benchmarks.history.build_iceberg`: 10,000 pyiceberg appends would take hours); delete
    files then come in their own manifest with the data commit every 100 data files.
    """
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.typedef import Record
    from pyiceberg.types import IntegerType, LongType, NestedField, StringType

    from airflow_provider_amoro.optimizing.delete_files import POS_FILE_PATH_FIELD_ID
    from airflow_provider_amoro.testing.deletes import commit_row_delta

    t0 = time.perf_counter()
    catalog = make_catalog(root)
    catalog.create_namespace_if_not_exists(NAMESPACE)
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "p", IntegerType(), required=False),
        NestedField(3, "note", StringType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="p"))
    ident = f"{NAMESPACE}.files_{n_files}" + ("" if per_commit == FILES_PER_COMMIT else f"_x{per_commit}")
    if catalog.table_exists(ident):
        catalog.drop_table(ident)
    rng = random.Random(n_files)
    if per_commit == FILES_PER_COMMIT:
        table = catalog.create_table(ident, schema=schema, partition_spec=spec)
        loc = table.location()
    else:
        loc = (root / "warehouse" / ident.replace(".", "/")).as_uri()

    def data_file(i: int) -> DataFile:
        size = _file_size(rng)
        records = max(1, size // 25)
        df = DataFile.from_args(
            _table_format_version=2,
            content=DataFileContent.DATA,
            file_path=f"{loc}/data/p={i % PARTITIONS}/{i:08d}-data.parquet",
            file_format=FileFormat.PARQUET,
            partition=Record(i % PARTITIONS),
            record_count=records,
            file_size_in_bytes=size,
            column_sizes={1: size // 3, 2: 16, 3: size // 2},
            value_counts={1: records, 2: records, 3: records},
            null_value_counts={1: 0, 2: 0, 3: 0},
            nan_value_counts={},
            lower_bounds={
                1: (i * 1_000_000).to_bytes(8, "little"),
                2: (i % PARTITIONS).to_bytes(4, "little"),
            },
            upper_bounds={
                1: (i * 1_000_000 + records).to_bytes(8, "little"),
                2: (i % PARTITIONS).to_bytes(4, "little"),
            },
            split_offsets=[4],
            sort_order_id=0,
        )
        df.spec_id = 0
        return df

    def delete_file(j: int, target: int) -> DataFile:
        equality = j % 2 == 0
        p = target % PARTITIONS
        bounds = (
            {}
            if equality
            else {POS_FILE_PATH_FIELD_ID: f"{loc}/data/p={p}/{target:08d}-data.parquet".encode()}
        )
        df = DataFile.from_args(
            _table_format_version=2,
            content=DataFileContent.EQUALITY_DELETES if equality else DataFileContent.POSITION_DELETES,
            file_path=f"{loc}/data/p={p}/{j:08d}-deletes.parquet",
            file_format=FileFormat.PARQUET,
            partition=Record(p),
            record_count=100,
            file_size_in_bytes=4_000,
            lower_bounds=bounds,
            upper_bounds=bounds,
            equality_ids=[1] if equality else None,
            sort_order_id=None,
        )
        df.spec_id = 0
        return df

    if per_commit != FILES_PER_COMMIT:
        from benchmarks.history import Commit, build_iceberg

        done = [0]

        def commit(i: int, md: Any) -> Commit:
            start = i * per_commit
            batch = [data_file(k) for k in range(start, min(n_files, start + per_commit))]
            wanted = (start + len(batch)) // 100
            dels = [delete_file(j, rng.randint(0, start + len(batch) - 1)) for j in range(done[0], wanted)]
            done[0] = max(done[0], wanted)
            return Commit(data=batch, deletes=dels)

        n_commits = -(-n_files // per_commit)
        build_iceberg(catalog, ident, loc, schema, spec, commit, n_commits, keep_snapshots=10)
        return {
            "ident": ident,
            "build_s": time.perf_counter() - t0,
            "delete_files": done[0],
            "per_commit": per_commit,
        }

    deletes_done = 0
    for start in range(0, n_files, FILES_PER_COMMIT):
        batch = [data_file(i) for i in range(start, min(n_files, start + FILES_PER_COMMIT))]
        with table.transaction() as tx, tx.update_snapshot().fast_append() as append:
            for df in batch:
                append.append_data_file(df)
        # 1 % delete files, committed after the data they delete from
        wanted = (start + len(batch)) // 100
        if wanted > deletes_done:
            dels = [
                delete_file(j, rng.randint(0, start + len(batch) - 1)) for j in range(deletes_done, wanted)
            ]
            commit_row_delta(table, delete_files=dels)
            deletes_done = wanted
    return {
        "ident": ident,
        "build_s": time.perf_counter() - t0,
        "delete_files": deletes_done,
        "per_commit": FILES_PER_COMMIT,
    }


def child_evaluate(meter: Any, root: str, ident: str) -> dict[str, Any]:
    """``evaluate(table)`` on the built table."""
    evaluate = engine_api().evaluate
    table = make_catalog(Path(root)).load_table(ident)
    with meter.timed():
        ev = evaluate(table)
    return {"kind": ev.kind, "health_score": getattr(ev, "health_score", None)}


def child_plan(meter: Any, root: str, ident: str) -> dict[str, Any]:
    """``plan(table)`` on the built table (includes its own evaluation); ``to_json`` timed apart."""
    plan = engine_api().plan
    table = make_catalog(Path(root)).load_table(ident)
    with meter.timed():
        p = plan(table)
    t0 = time.perf_counter()
    plan_json = p.to_json()
    json_s = time.perf_counter() - t0
    n_files = sum(len(t.rewrite_data_files) + len(t.rewrite_pos_data_files) for t in p.tasks)
    return {
        "kind": p.kind,
        "tasks": len(p.tasks),
        "files_in_plan": n_files,
        "plan_json_mb": len(plan_json) / MB,
        "to_json_s": json_s,
    }


def child_read_manifests(meter: Any, root: str, ident: str) -> dict[str, Any]:
    """Reference floor: read every live manifest entry with pyiceberg, no optimizing logic.

    (pyiceberg's own ``scan().plan_files()`` refuses tables with equality deletes.)
    """
    from concurrent.futures import ThreadPoolExecutor

    table = make_catalog(Path(root)).load_table(ident)
    snapshot = table.current_snapshot()
    with meter.timed():
        manifests = snapshot.manifests(table.io)
        with ThreadPoolExecutor(8) as pool:
            n = sum(
                len(entries)
                for entries in pool.map(
                    lambda m: m.fetch_manifest_entry(table.io, discard_deleted=True), manifests
                )
            )
    return {"entries": n}


def child_live_files(meter: Any, root: str, ident: str) -> dict[str, Any]:
    """The engine's manifest scan (``optimizing.scan.live_files``), which evaluate and plan build on."""
    from airflow_provider_amoro.optimizing.scan import live_files

    table = make_catalog(Path(root)).load_table(ident)
    with meter.timed():
        files = live_files(table)
    return {"entries": len(files.data_files) + len(files.delete_files)}


def _engine_available() -> bool:
    try:
        engine_api()
    except ImportError:
        return False
    return True


def run(quick: bool = False) -> dict[str, Any]:
    """Run benchmark 3; return its JSON-safe result."""
    root = WORK / "planning"
    shutil.rmtree(root, ignore_errors=True)
    engine = _engine_available()
    cases = []
    for n, per_commit in sizes(quick):
        print(f"  planning: building {n} files, {per_commit} per commit", flush=True)
        built = build(root, n, per_commit)
        case: dict[str, Any] = {"data_files": n, **built, "results": {}}
        params = {"root": str(root), "ident": built["ident"]}
        case["results"]["read manifests (floor)"] = run_child(
            "benchmarks.bench_planning:child_read_manifests", params
        )
        for name in ("live_files", "evaluate", "plan"):
            try:
                case["results"][name] = run_child(f"benchmarks.bench_planning:child_{name}", params)
            except RuntimeError as exc:
                missing = "ImportError" in str(exc) or "ModuleNotFoundError" in str(exc)
                case["results"][name] = {"error": "not available yet" if missing else str(exc)[-2000:]}
        cases.append(case)
    shutil.rmtree(root, ignore_errors=True)
    return {"name": "planning", "quick": quick, "engine_available": engine, "cases": cases}


def summarize(result: dict[str, Any]) -> list[str]:
    """Markdown lines for results.md."""
    cmd = "python -m benchmarks.run --only planning" + (" --quick" if result.get("quick") else "")
    out = [
        f"Reproduce: `{cmd}` (each step in its own process; peak RSS is the whole process, Python included).",
        "",
        "| data files | delete files | manifests | step | seconds | peak RSS MB | RSS Δ MB | detail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in result["cases"]:
        per_commit = case.get("per_commit", FILES_PER_COMMIT)
        deletes_manifests = case["delete_files"] // 10 if per_commit != FILES_PER_COMMIT else 0
        manifests = f"{-(-case['data_files'] // per_commit) + deletes_manifests:,}"
        head = f"| {case['data_files']:,} | {case['delete_files']:,} | {manifests} | {{}}"
        for step, r in case["results"].items():
            if "error" in r:
                err = r["error"] if r["error"] == "not available yet" else "error (see planning.json)"
                out.append(f"{head.format(step)} | {err} | | | |")
                continue
            detail = ", ".join(
                f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in r.items()
                if k
                in ("kind", "tasks", "files_in_plan", "plan_json_mb", "to_json_s", "entries", "health_score")
            )
            out.append(
                f"{head.format(step)} | {r['seconds']:.2f} | "
                f"{r['peak_rss_mb']:.0f} | {r['peak_delta_mb']:.0f} | {detail} |"
            )
    cs = result["cases"]
    if len(cs) >= 2:
        small, big = cs[:2]
        factor = big["data_files"] / small["data_files"]
        out += ["", f"Scaling ({factor:.0f}x the files; linear = {factor:.0f}x):", ""]
        for step in big["results"]:
            a, b = small["results"].get(step, {}), big["results"][step]
            if "seconds" in a and "seconds" in b:
                grow = b["seconds"] / a["seconds"]
                ok = grow <= factor * 1.2
                line = (
                    f"- {step}: time grew {grow:.1f}x ({'linear or better' if ok else 'WORSE than linear'})"
                )
                if step in ("evaluate", "plan"):
                    line += (
                        f"; {big['data_files']:,} files in {b['seconds']:.1f} s "
                        f"({'✅' if b['seconds'] < 30 else '❌'} < 30 s), peak RSS {b['peak_rss_mb']:.0f} MB "
                        f"({'✅' if b['peak_rss_mb'] < 1024 else '❌'} < 1 GB)"
                    )
                out.append(line)
    for case in cs[2:]:
        ev, pl = case["results"].get("evaluate", {}), case["results"].get("plan", {})
        if "seconds" in ev and "seconds" in pl:
            total = ev["seconds"] + pl["seconds"]
            peak = max(ev["peak_rss_mb"], pl["peak_rss_mb"])
            commits = -(-case["data_files"] // case["per_commit"])
            out.append(
                f"- {case['data_files']:,} files from {commits:,} commits (one manifest each): "
                f"evaluate + plan {total:.1f} s ({'✅' if total < 30 else '❌'} < 30 s), "
                f"peak RSS {peak:.0f} MB ({'✅' if peak < 1024 else '❌'} < 1 GB)"
            )
    return out


def plot(result: dict[str, Any], folder: Path) -> list[str]:
    """Time vs number of files, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = sorted({s for c in result["cases"] for s in c["results"]})
    few = [c for c in result["cases"] if c.get("per_commit", FILES_PER_COMMIT) == FILES_PER_COMMIT]
    for step in steps:
        xs = [c["data_files"] for c in few if "seconds" in c["results"].get(step, {})]
        ys = [c["results"][step]["seconds"] for c in few if "seconds" in c["results"].get(step, {})]
        if xs:
            ax.plot(xs, ys, marker="o", label=step)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("data files in table")
    ax.set_ylabel("seconds")
    ax.set_title("Planning at scale")
    ax.legend()
    fig.tight_layout()
    path = folder / "planning.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path.name]
