"""Benchmark 5: compaction of tables built commit by commit (streaming history), engine vs delta-rs vs floor.

The same 400,000 rows (the compaction benchmark's event schema) as 200 files in ONE commit, and as
one file per commit over 200, 1,000 and 5,000 commits, exactly as a streaming writer leaves a table
(see :mod:`benchmarks.history`). Per shape, interleaved, each in its own process, one run:

- **floor**: a threaded pyarrow dataset scan of the files into one ``ParquetWriter`` (no table logic);
- **delta-rs**: ``DeltaTable(path)`` + ``optimize.compact()`` on a Delta table with the same files,
  one version per commit (and the checkpoint delta-rs writers leave every 100 versions);
- **engine, first process**: ``catalog.load_table`` + ``optimize(table, "minor")`` on the fresh
  table; then 12 more one-file commits arrive (pyiceberg ``append``, not timed);
- **engine, next process**: ``load_table`` + ``optimize(table, "minor")`` again, in a new process.

Every competitor reads its rows back (the engine through the independent iceberg-rust reader).
The fixed cost of an engine process is its wall time minus the time executing the rewrite
(``OptimizeResult.execute_s``): loading metadata, evaluating, planning and committing.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.bench_compaction import median_run
from benchmarks.common import WORK, dir_size, local_path, make_catalog, run_child

NAMESPACE = "bench"
TOTAL_ROWS = 400_000
NEXT_COMMITS = 12
NEXT_ROWS = 2_000
KEEP_SNAPSHOTS = 100
#: (commits, files per commit); every shape holds TOTAL_ROWS rows
SHAPES = [(1, 200), (200, 1), (1_000, 1), (5_000, 1)]
QUICK_SHAPES = [(1, 50), (50, 1), (200, 1)]
#: Interleaved rounds per shape (the median run by wall time is reported; one run moved by up to
#: +-40 % between invocations on this 2-core machine)
REPS = 3


def _iceberg_schema() -> Any:
    from pyiceberg.schema import Schema
    from pyiceberg.types import DoubleType, LongType, NestedField, StringType

    return Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "ts", LongType(), required=False),
        NestedField(3, "category", StringType(), required=False),
        NestedField(4, "amount", DoubleType(), required=False),
        NestedField(5, "note", StringType(), required=False),
    )


def _rows(first: int, n: int, arrow_schema: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(first)
    ids = np.arange(first, first + n, dtype=np.int64)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    raw = letters[rng.integers(0, len(letters), size=n * 16)].tobytes()
    notes = pa.StringArray.from_buffers(
        n, pa.py_buffer(np.arange(0, 16 * (n + 1), 16, dtype=np.int32).tobytes()), pa.py_buffer(raw)
    )
    categories = pa.array([f"c{i % 12}" for i in range(first, first + n)])
    return pa.table(
        [
            pa.array(ids),
            pa.array(1_700_000_000_000 + ids * 37),
            categories,
            pa.array(rng.random(n) * 100),
            notes,
        ],
        schema=arrow_schema,
    )


def prepare(root: Path, commits: int, per_commit: int) -> dict[str, Any]:
    """Write the shape's files, Iceberg table and Delta table once (reused by later runs)."""
    import json

    import pyarrow.parquet as pq
    from pyiceberg.io.pyarrow import PyArrowFileIO, parquet_file_to_data_file, schema_to_pyarrow
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC

    from benchmarks.history import Commit, build_delta, build_iceberg

    n_files = commits * per_commit
    rows_per_file = TOTAL_ROWS // n_files
    shape = root / f"c{commits}x{per_commit}"
    marker = shape / "ready.json"
    if marker.exists():
        return dict(json.loads(marker.read_text()))
    if shape.exists():
        shutil.rmtree(shape)
    t0 = time.perf_counter()
    schema = _iceberg_schema()
    arrow_schema = schema_to_pyarrow(schema)
    delta_base = shape / "delta_base"
    delta_base.mkdir(parents=True)
    files = []
    for i in range(n_files):
        path = delta_base / f"part-{i:05d}.parquet"
        pq.write_table(_rows(i * rows_per_file, rows_per_file, arrow_schema), path, compression="zstd")
        files.append(str(path))
    io = PyArrowFileIO()

    def commit(i: int, md: Any) -> Commit:
        chunk = files[i * per_commit : (i + 1) * per_commit]
        return Commit(data=[parquet_file_to_data_file(io, md, f) for f in chunk])

    catalog = make_catalog(shape)
    catalog.create_namespace_if_not_exists(NAMESPACE)
    metadata_location = build_iceberg(
        catalog,
        f"{NAMESPACE}.base",
        (shape / "iceberg").as_uri(),
        schema,
        UNPARTITIONED_PARTITION_SPEC,
        commit,
        commits,
        keep_snapshots=KEEP_SNAPSHOTS,
    )
    versions = [
        [
            (Path(f).name, os.path.getsize(f), rows_per_file)
            for f in files[i * per_commit : (i + 1) * per_commit]
        ]
        for i in range(commits)
    ]
    build_delta(delta_base, versions, arrow_schema)
    info = {
        "commits": commits,
        "files": files,
        "rows": rows_per_file * n_files,
        "input_bytes": dir_size(files),
        "metadata_location": metadata_location,
        "delta_base": str(delta_base),
        "build_s": time.perf_counter() - t0,
    }
    marker.write_text(json.dumps(info))
    return info


# ----------------------------------------------------------------------------------------------
# children


def _read_back(table: Any) -> int:
    from airflow_provider_amoro.testing.reader import read_table

    return int(read_table(table).num_rows)


def child_engine_first(meter: Any, root: str, metadata_location: str, live_rows: int) -> dict[str, Any]:
    """First process on a fresh registration of the built table; then more commits arrive."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    from airflow_provider_amoro.optimizing import optimize

    catalog = make_catalog(Path(root))
    ident = f"{NAMESPACE}.run_{uuid.uuid4().hex[:8]}"
    catalog.register_table(ident, metadata_location)
    with meter.timed():
        table = catalog.load_table(ident)
        result = optimize(table, "minor")
    manifests_after = len(table.current_snapshot().manifests(table.io))
    rows = _read_back(catalog.load_table(ident))
    arrow_schema = schema_to_pyarrow(table.schema())
    for i in range(NEXT_COMMITS):
        table.append(_rows(10**9 + i * NEXT_ROWS, NEXT_ROWS, arrow_schema))
    return {
        "ident": ident,
        "kind": result.kind,
        "tasks": result.tasks,
        "input_files": result.input_files,
        "output_files": result.output_files,
        "execute_s": result.execute_s,
        "fixed_s": meter.seconds - result.execute_s,
        "output_rows": rows,
        "rows_ok": rows == live_rows,
        "manifests_after": manifests_after,
    }


def child_engine_next(meter: Any, root: str, ident: str, live_rows: int) -> dict[str, Any]:
    """The next process on the same table, after the first one and NEXT_COMMITS more commits."""
    from airflow_provider_amoro.optimizing import optimize
    from airflow_provider_amoro.optimizing.manifests import MANIFEST_CACHE

    catalog = make_catalog(Path(root))
    looked = catalog.load_table(ident)
    manifests_before = len(looked.current_snapshot().manifests(looked.io))
    MANIFEST_CACHE.clear()  # the look above must not warm the measured process
    with meter.timed():
        table = catalog.load_table(ident)
        result = optimize(table, "minor")
    rows = _read_back(catalog.load_table(ident))
    return {
        "kind": result.kind,
        "input_files": result.input_files,
        "execute_s": result.execute_s,
        "fixed_s": meter.seconds - result.execute_s,
        "manifests_before": manifests_before,
        "output_rows": rows,
        "rows_ok": rows == live_rows,
    }


def child_floor(meter: Any, shape: str, out: str, live_rows: int) -> dict[str, Any]:
    """The compaction benchmark's floor on the shape's files (listed in its ready.json)."""
    import json

    from benchmarks.bench_compaction import child_floor as floor

    files = json.loads((Path(shape) / "ready.json").read_text())["files"]
    return floor(meter, files, [], out, live_rows)


def child_delta(meter: Any, path: str, live_rows: int) -> dict[str, Any]:
    """``DeltaTable(path)`` + ``optimize.compact()``, zstd, the same 128 MiB target."""
    from deltalake import DeltaTable, WriterProperties

    from benchmarks.bench_compaction import TARGET

    with meter.timed():
        dt = DeltaTable(path)
        metrics = dt.optimize.compact(
            target_size=TARGET, writer_properties=WriterProperties(compression="ZSTD")
        )
    rows = DeltaTable(path).to_pyarrow_dataset().count_rows()
    return {"output_files": metrics["numFilesAdded"], "output_rows": rows, "rows_ok": rows == live_rows}


# ----------------------------------------------------------------------------------------------
# driver


def run(quick: bool = False, reps: int = REPS) -> dict[str, Any]:
    """Build (or reuse) every shape, then run floor, delta-rs and the engine per shape, ``reps``
    interleaved rounds each; the median run by wall time is reported."""
    root = WORK / "history"
    root.mkdir(parents=True, exist_ok=True)
    shapes = QUICK_SHAPES if quick else SHAPES
    rows_out = []
    for commits, per_commit in shapes:
        info = prepare(root, commits, per_commit)
        shape = Path(info["delta_base"]).parent
        print(f"   {commits} commits x {per_commit} files: built in {info['build_s']:.0f} s", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {"floor": [], "delta": [], "engine": [], "engine_next": []}
        idents = []
        for _ in range(reps):
            one = _one_round(shape, info)
            idents.append(one.pop("ident"))
            for key, value in one.items():
                runs[key].append(value)
        floor, delta, first, nxt = (median_run(runs[k]) for k in ("floor", "delta", "engine", "engine_next"))
        for key, agg in zip(
            ("floor", "delta", "engine", "engine_next"), (floor, delta, first, nxt), strict=True
        ):
            agg["rows_ok"] = all(r["rows_ok"] for r in runs[key])  # every run read its rows back
        catalog = make_catalog(shape)
        for ident in idents:
            catalog.drop_table(ident)
        shutil.rmtree(local_path((shape / "iceberg" / "data").as_uri()), ignore_errors=True)
        row = {
            "commits": commits,
            "files": len(info["files"]),
            "rows": info["rows"],
            "input_mb": info["input_bytes"] / 2**20,
            "build_s": info["build_s"],
            "floor": floor,
            "delta": delta,
            "engine": first,
            "engine_next": nxt,
        }
        print(
            f"   engine {first['seconds']:.2f} s (fixed {first['fixed_s']:.2f} s, "
            f"next {nxt['fixed_s']:.2f} s), "
            f"delta-rs {delta['seconds']:.2f} s, floor {floor['seconds']:.2f} s",
            flush=True,
        )
        rows_out.append(row)
    return {"shapes": rows_out, "quick": quick, "median_of": reps}


def _one_round(shape: Path, info: dict[str, Any]) -> dict[str, Any]:
    """One interleaved run of floor, delta-rs, the engine's first and next process on a shape."""
    from benchmarks.history import copy_delta

    out = str(shape / "floor.parquet")
    floor = run_child(
        "benchmarks.bench_history:child_floor",
        {"shape": str(shape), "out": out, "live_rows": info["rows"]},
    )
    delta_dir = shape / "delta_run"
    copy_delta(Path(info["delta_base"]), delta_dir)
    delta = run_child(
        "benchmarks.bench_history:child_delta", {"path": str(delta_dir), "live_rows": info["rows"]}
    )
    shutil.rmtree(delta_dir)
    first = run_child(
        "benchmarks.bench_history:child_engine_first",
        {"root": str(shape), "metadata_location": info["metadata_location"], "live_rows": info["rows"]},
    )
    nxt = run_child(
        "benchmarks.bench_history:child_engine_next",
        {"root": str(shape), "ident": first["ident"], "live_rows": info["rows"] + NEXT_COMMITS * NEXT_ROWS},
    )
    return {"floor": floor, "delta": delta, "engine": first, "engine_next": nxt, "ident": first["ident"]}


def summarize(result: dict[str, Any]) -> list[str]:
    """Markdown for results.md."""
    lines = [
        f"Reproduce: `python -m benchmarks.run --only history` (median of {result.get('median_of', 1)} "
        "interleaved rounds per shape: floor, "
        "delta-rs, engine first process, engine next process; each in its own process). Same 400,000 "
        "rows in every shape; one file per commit except the first shape (200 files in one commit). "
        f"Iceberg keeps the last {KEEP_SNAPSHOTS} snapshots (older ones expired); the next process "
        f"runs after {NEXT_COMMITS} more one-file commits. Wall time includes loading the table.",
        "",
        "| commits | files | input MB | engine s | delta-rs s | floor s | engine / delta-rs | engine / floor "
        "| fixed cost first s | fixed cost next s | manifests after first | rows ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["shapes"]:
        e, d, f, n = r["engine"], r["delta"], r["floor"], r["engine_next"]
        ok = all(x["rows_ok"] for x in (e, d, f, n))
        lines.append(
            f"| {r['commits']:,} | {r['files']:,} | {r['input_mb']:.1f} | {e['seconds']:.2f} "
            f"| {d['seconds']:.2f} "
            f"| {f['seconds']:.2f} | {d['seconds'] / e['seconds']:.2f}x | {f['seconds'] / e['seconds']:.2f}x "
            f"| {e['fixed_s']:.2f} | {n['fixed_s']:.2f} | {e['manifests_after']} | {'yes' if ok else 'NO'} |"
        )
    loads = [x["load_avg_1m"] for r in result["shapes"] for x in (r["engine"], r["delta"], r["floor"])]
    lines += [
        "",
        "Ratios > 1 mean the engine is faster (competitor seconds / engine seconds). Goals: engine "
        "≥ 1.0x delta-rs and the floor; fixed cost < 0.3 s at 1,000 commits and growing less than "
        "linearly to 5,000. "
        f"Machine load (1-minute average) during the runs: {min(loads):.1f} to {max(loads):.1f}.",
    ]
    return lines


def plot(result: dict[str, Any], folder: Path) -> list[str]:
    """Fixed cost per process against commits (first and next process)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    shapes = result["shapes"]
    xs = [r["commits"] for r in shapes]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(xs, [r["engine"]["fixed_s"] for r in shapes], "o-", label="first process (fresh table)")
    ax.plot(xs, [r["engine_next"]["fixed_s"] for r in shapes], "s-", label="next process")
    ax.axhline(0.3, color="grey", linestyle=":", label="goal at 1,000 commits (0.3 s)")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("commits in the table's history")
    ax.set_ylabel("fixed cost per process, s (optimize - execute)")
    ax.set_title("Engine fixed cost per optimizing process")
    ax.legend()
    fig.tight_layout()
    name = "history.png"
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return [name]
