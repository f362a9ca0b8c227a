"""Benchmark 1: compaction throughput of the engine, delta-rs and the pyarrow floor on the same rows.

Data sets (the same Parquet files for every competitor, page cache warm for all):

- ``small``: 1,000 files of about 100 KB (``--quick``: 200);
- ``large``: 100 files of about 5 MB (``--quick``: 20);

each without deletes and with position deletes of every row whose ``id % 10 == 0`` (10 % of rows,
one position-delete file, as one Spark/Flink delete commit writes it).

Competitors, each in its own subprocess (peak RSS of that process only):

- ``engine``: ``plan(table)`` + ``execute(table, task)`` for every task + ``commit(table, plan,
  results)`` on an Iceberg table registered over the same files (``add_files``);
- ``delta-rs``: ``DeltaTable.optimize.compact()`` on a Delta table converted in place from hard
  links of the same files (for the delete case, delta-rs writes no deletion vectors, so the same
  rows are deleted by its copy-on-write ``DELETE`` before the clock starts: it compacts the same
  live rows, from files holding only them);
- ``floor``: ``pyarrow.dataset.dataset(files).to_batches(use_threads=True)`` into one
  ``pq.ParquetWriter`` (zstd, row groups of about 1M rows); position deletes applied with a
  vectorised mask per batch. No table logic at all.

All write zstd Parquet at the codec's default level with a 128 MiB target size. Throughput is MB of
the Iceberg input (data + delete files) per second; the ratios compare the times of the same rows.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import MB, WORK, dir_size, engine_api, local_path, make_catalog, run_child, warm

TARGET = 128 * MB
ENGINE_PARALLEL = "engine x2"
"""The engine executing two tasks at once (two pool slots on this 2-core machine)."""
NAMESPACE = "bench"


def datasets(quick: bool) -> list[dict[str, Any]]:
    """The data sets: name, file count, file size."""
    return [
        {"name": "small", "count": 200 if quick else 1000, "file_bytes": 100_000},
        {"name": "large", "count": 20 if quick else 100, "file_bytes": 5_000_000},
    ]


# ----------------------------------------------------------------------------------------------
# preparation (parent process, not timed)


def prepare(root: Path, ds: dict[str, Any], deletes: bool) -> dict[str, Any]:
    """Write the files, build the Iceberg table (and its position deletes); return what runs need."""
    from benchmarks.datagen import rows_for_size, write_files

    src = root / f"src-{ds['name']}-{ds['count']}"
    if not (src / ".complete").exists():
        shutil.rmtree(src, ignore_errors=True)
        write_files(src, ds["count"], ds["file_bytes"], seed=1 if ds["name"] == "small" else 2)
        (src / ".complete").touch()
    files = sorted(p.as_uri() for p in src.glob("*.parquet"))
    n = rows_for_size(ds["file_bytes"])

    catalog = make_catalog(root)
    catalog.create_namespace_if_not_exists(NAMESPACE)
    ident = f"{NAMESPACE}.{ds['name']}_{'posdel' if deletes else 'plain'}_{uuid.uuid4().hex[:6]}"
    import pyarrow.parquet as pq

    table = catalog.create_table(ident, schema=pq.read_schema(local_path(files[0])))
    table.add_files(files)
    delete_files: list[str] = []
    live_rows = n * len(files)
    if deletes:
        from airflow_provider_amoro.testing.deletes import add_position_deletes

        positions: dict[str, list[int]] = {}
        for i, f in enumerate(files):
            start = i * n
            first = (-start) % 10
            positions[f] = list(range(first, n, 10))
            live_rows -= len(positions[f])
        table = add_position_deletes(table, positions)
        delete_files = [df.file_path for df in _delete_files(table)]
    return {
        "ident": ident,
        "metadata_location": table.metadata_location,
        "files": files,
        "delete_files": delete_files,
        "input_bytes": dir_size(files) + dir_size(delete_files),
        "live_rows": live_rows,
    }


def _delete_files(table: Any) -> list[Any]:
    """Live delete files of the table's current snapshot."""
    from pyiceberg.manifest import DataFileContent

    return [
        entry.data_file
        for manifest in table.current_snapshot().manifests(table.io)
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
        if entry.data_file.content != DataFileContent.DATA
    ]


def live_copies(root: Path, files: list[str], name: str) -> list[str]:
    """Copies of ``files`` without the rows ``id % 10 == 0`` (the rows the position deletes remove).

    delta-rs writes no deletion vectors, and its copy-on-write DELETE would also merge the files,
    leaving compaction nothing to do; so the Delta side of the delete case starts from the same
    live rows in the same number of files. Written once and cached.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    dst = root / f"src-{name}-{len(files)}-live"
    if not (dst / ".complete").exists():
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        for f in files:
            t = pq.read_table(local_path(f))
            keep = pa.array(t.column("id").to_numpy() % 10 != 0)
            pq.write_table(t.filter(keep), dst / Path(local_path(f)).name, compression="zstd")
        (dst / ".complete").touch()
    return sorted(p.as_uri() for p in dst.glob("*.parquet"))


def prepare_delta(root: Path, files: list[str], tag: str) -> str:
    """Hard-link the files into a fresh folder and convert it to a Delta table (not timed)."""
    from deltalake import convert_to_deltalake

    dst = root / f"delta-{tag}-{uuid.uuid4().hex[:6]}"
    dst.mkdir(parents=True)
    for f in files:
        p = Path(local_path(f))
        os.link(p, dst / p.name)
    convert_to_deltalake(str(dst))
    return str(dst)


# ----------------------------------------------------------------------------------------------
# measured children


def child_engine(
    meter: Any, root: str, metadata_location: str, live_rows: int, workers: int = 1
) -> dict[str, Any]:
    """plan + execute every task + commit on a fresh registration of the prepared table.

    ``workers`` > 1 executes that many tasks at once on threads, as that many Airflow pool slots
    would run the mapped execute tasks (delta-rs compacts with one concurrent task per core).
    """
    from concurrent.futures import ThreadPoolExecutor

    eng = engine_api()
    catalog = make_catalog(Path(root))
    table = catalog.register_table(f"{NAMESPACE}.run_{uuid.uuid4().hex[:8]}", metadata_location)
    phases: dict[str, float] = {}
    with meter.timed():
        t0 = time.perf_counter()
        p = eng.plan(table)
        t1 = time.perf_counter()
        if workers > 1 and len(p.tasks) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(lambda task: eng.execute(table, task), p.tasks))
        else:
            results = [eng.execute(table, task) for task in p.tasks]
        t2 = time.perf_counter()
        eng.commit(table, p, results)
        t3 = time.perf_counter()
    phases = {"plan_s": t1 - t0, "execute_s": t2 - t1, "commit_s": t3 - t2}
    out_records = sum(r.output_records for r in results)
    outputs = [o["file_path"] for r in results for o in r.outputs]
    task_bytes = [t.input_bytes for t in p.tasks]
    task_secs = [r.duration_s for r in results]
    check = _count_rows(catalog.load_table(table.name()))
    for o in outputs:
        Path(local_path(o)).unlink(missing_ok=True)
    return {
        **phases,
        "kind": p.kind,
        "tasks": len(p.tasks),
        "max_task_bytes": max(task_bytes, default=0),
        "task_seconds": task_secs,
        "task_bytes": task_bytes,
        "output_files": len(outputs),
        "output_rows": out_records,
        "rows_ok": check == live_rows,
        "rows_read_back": check,
    }


def _count_rows(table: Any) -> int:
    from airflow_provider_amoro.testing.reader import read_table

    return read_table(table).num_rows


def child_delta(meter: Any, path: str, live_rows: int) -> dict[str, Any]:
    """``DeltaTable.optimize.compact()`` with zstd and the same target size."""
    from deltalake import DeltaTable, WriterProperties

    dt = DeltaTable(path)
    input_bytes = dir_size(dt.file_uris())
    with meter.timed():
        metrics = dt.optimize.compact(
            target_size=TARGET, writer_properties=WriterProperties(compression="ZSTD")
        )
    rows = DeltaTable(path).to_pyarrow_dataset().count_rows()
    return {
        "delta_input_bytes": input_bytes,
        "output_files": metrics["numFilesAdded"],
        "output_rows": rows,
        "rows_ok": rows == live_rows,
    }


def child_floor(
    meter: Any, files: list[str], delete_files: list[str], out: str, live_rows: int
) -> dict[str, Any]:
    """Threaded pyarrow scan into one ParquetWriter; position deletes by a vectorised mask."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    paths = [local_path(f) for f in files]
    rows_out = 0
    with meter.timed():
        deleted: dict[str, Any] = {}
        if delete_files:
            dels = pq.read_table([local_path(f) for f in delete_files], columns=["file_path", "pos"])
            grouped = dels.group_by("file_path").aggregate([("pos", "list")])
            for fp, pos in zip(
                grouped.column("file_path").to_pylist(), grouped.column("pos_list").to_pylist(), strict=True
            ):
                deleted[local_path(fp)] = np.sort(np.asarray(pos, dtype=np.int64))
        dataset = pads.dataset(paths, format="parquet")
        names = dataset.schema.names
        columns = [*names, "__filename"] if deleted else names
        offsets: dict[str, int] = defaultdict(int)
        writer = pq.ParquetWriter(out, dataset.schema, compression="zstd")
        buf: list[pa.RecordBatch] = []
        buffered = 0
        for batch in dataset.to_batches(columns=columns, use_threads=True):
            if deleted:
                fname = batch.column(len(names))[0].as_py()
                n = batch.num_rows
                off = offsets[fname]
                offsets[fname] = off + n
                batch = batch.select(names)
                pos = deleted.get(fname)
                if pos is not None:
                    lo, hi = np.searchsorted(pos, [off, off + n])
                    if hi > lo:
                        mask = np.ones(n, dtype=bool)
                        mask[pos[lo:hi] - off] = False
                        batch = batch.filter(pa.array(mask))
            buf.append(batch)
            buffered += batch.num_rows
            if buffered >= 1_048_576:
                writer.write_table(pa.Table.from_batches(buf), row_group_size=1_048_576)
                rows_out += buffered
                buf, buffered = [], 0
        if buf:
            writer.write_table(pa.Table.from_batches(buf), row_group_size=1_048_576)
            rows_out += buffered
        writer.close()
    size = os.path.getsize(out)
    os.unlink(out)
    return {
        "output_files": 1,
        "output_rows": rows_out,
        "output_bytes": size,
        "rows_ok": rows_out == live_rows,
    }


# ----------------------------------------------------------------------------------------------
# driver


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median run by wall time, with the median CPU time and the worst peak memory of all runs."""
    by_wall = sorted(runs, key=lambda r: r["seconds"])
    out = dict(by_wall[len(by_wall) // 2])
    out["all_seconds"] = [round(r["seconds"], 3) for r in runs]
    out["all_cpu_seconds"] = [round(r["cpu_seconds"], 3) for r in runs]
    out["cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in runs)
    out["peak_delta_mb"] = max(r["peak_delta_mb"] for r in runs)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["load_avg_1m"] = statistics.median(r["load_avg_1m"] for r in runs)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Run benchmark 1; return its JSON-safe result.

    The competitors are interleaved (floor, delta-rs, engine, floor, ...) so that each repetition
    of each sees the same background load; the median of the repetitions is reported.
    """
    root = WORK / "compaction"
    for stale in root.glob("delta-*"):
        shutil.rmtree(stale, ignore_errors=True)
    (root / "catalog.db").unlink(missing_ok=True)
    shutil.rmtree(root / "warehouse", ignore_errors=True)
    reps = 1 if quick else 3
    engine_ok = _engine_available()
    rows: list[dict[str, Any]] = []
    for ds in datasets(quick):
        for deletes in (False, True):
            prep = prepare(root, ds, deletes)
            delta_files = live_copies(root, prep["files"], ds["name"]) if deletes else prep["files"]
            warm(prep["files"] + prep["delete_files"] + delta_files)
            case: dict[str, Any] = {
                "dataset": f"{ds['count']} x {ds['file_bytes'] // 1000} KB",
                "deletes": "10% position deletes" if deletes else "none",
                "input_mb": prep["input_bytes"] / MB,
                "live_rows": prep["live_rows"],
                "results": {},
            }
            print(f"  compaction {case['dataset']} deletes={case['deletes']}", flush=True)
            runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
            errors: dict[str, str] = {}
            for _ in range(reps):
                runs["floor"].append(
                    run_child(
                        "benchmarks.bench_compaction:child_floor",
                        {
                            "files": prep["files"],
                            "delete_files": prep["delete_files"],
                            "out": str(root / "floor-out.parquet"),
                            "live_rows": prep["live_rows"],
                        },
                    )
                )
                delta_path = prepare_delta(root, delta_files, ds["name"])
                runs["delta-rs"].append(
                    run_child(
                        "benchmarks.bench_compaction:child_delta",
                        {"path": delta_path, "live_rows": prep["live_rows"]},
                    )
                )
                shutil.rmtree(delta_path, ignore_errors=True)
                for name, workers in (("engine", 1), (ENGINE_PARALLEL, 2)):
                    if not engine_ok or name in errors:
                        continue
                    try:
                        runs[name].append(
                            run_child(
                                "benchmarks.bench_compaction:child_engine",
                                {
                                    "root": str(root),
                                    "metadata_location": prep["metadata_location"],
                                    "live_rows": prep["live_rows"],
                                    "workers": workers,
                                },
                            )
                        )
                    except RuntimeError as exc:
                        errors[name] = str(exc)[-3000:]
            for name, got in runs.items():
                if got:
                    case["results"][name] = median_run(got)
            for name, err in errors.items():
                case["results"][name] = {"error": err}
            for res in case["results"].values():
                if "seconds" in res:
                    res["mb_per_s"] = case["input_mb"] / res["seconds"]
                    res["rows_per_s"] = case["live_rows"] / res["seconds"]
            rows.append(case)
    for stale in root.glob("delta-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return {
        "name": "compaction",
        "quick": quick,
        "engine_available": engine_ok,
        "cases": rows,
        "median_of": reps,
    }


def _engine_available() -> bool:
    try:
        engine_api()
    except ImportError:
        return False
    return True


def summarize(result: dict[str, Any]) -> list[str]:
    """Markdown lines for results.md."""
    cmd = "python -m benchmarks.run --only compaction" + (" --quick" if result.get("quick") else "")
    out = [
        f"Reproduce: `{cmd}` (median of {result['median_of']} interleaved runs per cell; each run in its "
        "own process). Ratios > 1 mean the engine is faster. *wall*: elapsed time (the goal); *CPU*: "
        "user+system seconds of the process, less sensitive to other load on the machine.",
        "",
        "| data | deletes | input MB | engine MB/s | delta-rs MB/s | floor MB/s "
        "| engine / delta-rs (wall, CPU) | engine / floor (wall, CPU) "
        "| engine peak RSS Δ MB | largest task MB | peak / task "
        "| goals: ≥1.0x delta, ≥0.8x floor, <3x task "
        "| engine x2 MB/s | engine x2 / delta-rs (wall) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def rate(x: dict[str, Any]) -> str:
        return f"{x['mb_per_s']:.1f}" if "mb_per_s" in x else ("error" if "error" in x else "n/a")

    def mark(ok: bool) -> str:
        return "✅" if ok else "❌"

    for case in result["cases"]:
        r = case["results"]
        e, d, f = r.get("engine", {}), r.get("delta-rs", {}), r.get("floor", {})
        if "seconds" in e and "seconds" in d and "seconds" in f:
            vs_d, vs_f = d["seconds"] / e["seconds"], f["seconds"] / e["seconds"]
            cpu_d, cpu_f = d["cpu_seconds"] / e["cpu_seconds"], f["cpu_seconds"] / e["cpu_seconds"]
            task_mb = e["max_task_bytes"] / MB
            mem_ratio = e["peak_delta_mb"] / task_mb if task_mb else float("nan")
            goals = f"{mark(vs_d >= 1.0)} {mark(vs_f >= 0.8)} {mark(mem_ratio < 3)}"
            if not e.get("rows_ok"):
                goals += " ROW COUNT MISMATCH"
            cells = [
                f"{vs_d:.2f}x, {cpu_d:.2f}x",
                f"{vs_f:.2f}x, {cpu_f:.2f}x",
                f"{e['peak_delta_mb']:.0f}",
                f"{task_mb:.0f}",
                f"{mem_ratio:.2f}x",
                goals,
            ]
        else:
            cells = ["n/a"] * 6
        p2 = r.get(ENGINE_PARALLEL, {})
        if "seconds" in p2 and "seconds" in d:
            x2 = d["seconds"] / p2["seconds"]
            cells += [rate(p2), f"{x2:.2f}x {mark(x2 >= 1.0)}" + ("" if p2.get("rows_ok") else " ROWS?")]
        else:
            cells += [rate(p2), "n/a"]
        out.append(
            f"| {case['dataset']} | {case['deletes']} | {case['input_mb']:.0f} "
            f"| {rate(e)} | {rate(d)} | {rate(f)} | " + " | ".join(cells) + " |"
        )
    loads = [res.get("load_avg_1m", 0) for c in result["cases"] for res in c["results"].values()]
    out += [
        "",
        f"Machine load (1-minute load average during the runs, 2 cores): {min(loads, default=0):.1f} to "
        f"{max(loads, default=0):.1f}.",
        "",
        "*engine x2*: the same engine executing two tasks at once (threads), as two Airflow pool "
        "slots run mapped execute tasks; delta-rs compacts with one concurrent task per core (2 here). "
        "A one-task plan cannot use the second slot. The floor is one writer, so it is compared with "
        "*engine* only.",
        "",
        "Peak memory of the other competitors (RSS Δ over the process's RSS before the timed step, MB): "
        + "; ".join(
            f"{c['dataset']}/{c['deletes']}: "
            f"delta-rs {c['results'].get('delta-rs', {}).get('peak_delta_mb', 0):.0f}, "
            f"floor {c['results'].get('floor', {}).get('peak_delta_mb', 0):.0f}"
            for c in result["cases"]
        ),
    ]
    eng = [c for c in result["cases"] if "seconds" in c["results"].get("engine", {})]
    if eng:
        out += ["", "Engine phases of the median run:", ""]
        for c in eng:
            e = c["results"]["engine"]
            out.append(
                f"- {c['dataset']} / {c['deletes']}: plan {e['plan_s']:.2f} s, "
                f"execute {e['execute_s']:.2f} s "
                f"({e['tasks']} task(s), {e['kind']}), commit {e['commit_s']:.2f} s; "
                f"{e['output_files']} output file(s); rows read back {e.get('rows_read_back')}"
            )
    return out


def plot(result: dict[str, Any], folder: Path) -> list[str]:
    """A grouped bar chart of MB/s per data set and competitor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = result["cases"]
    labels = [f"{c['dataset']}\n{c['deletes']}" for c in cases]
    comps = ["engine", ENGINE_PARALLEL, "delta-rs", "floor"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.2
    for i, comp in enumerate(comps):
        vals = [c["results"].get(comp, {}).get("mb_per_s", 0.0) for c in cases]
        ax.bar([x + (i - 1.5) * width for x in range(len(cases))], vals, width, label=comp)
    ax.set_xticks(range(len(cases)), labels, fontsize=8)
    ax.set_ylabel("MB of input per second")
    ax.set_title("Compaction throughput (same rows, same machine, one run)")
    ax.legend()
    fig.tight_layout()
    path = folder / "compaction.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path.name]
