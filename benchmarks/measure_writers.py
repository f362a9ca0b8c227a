"""Measure the Parquet writers the engine could use, on the compaction benchmark's rows.

Usage::

    python -m benchmarks.measure_writers [--rows 2400000]

Prints wall and CPU seconds (process user + system) of writing the same Arrow table as zstd
Parquet with field ids, each way three times (best wall kept):

- ``pyarrow 1 file``: one ``pq.ParquetWriter`` (what ``execute`` uses), one row group;
- ``pyarrow 1 file, 4 groups written from a thread``: the same file written as 4 row groups by a
  writer thread while the main thread prepares the next group (the overlap a pipelined writer gets);
- ``pyarrow 2 files at once``: two writers on two threads, half the rows each (two output files);
- ``datafusion 1 file``: DataFusion's ``write_parquet`` with its parallel single-file writer
  (columns of a row group encoded in parallel; keeps ``PARQUET:field_id`` from the Arrow schema).

The figures quoted in ``benchmarks/README.md`` come from here.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil


def _timed(func: Callable[[], Any], repeat: int = 3) -> tuple[float, float]:
    proc = psutil.Process()
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        c0 = proc.cpu_times()
        t0 = time.perf_counter()
        func()
        wall = time.perf_counter() - t0
        c1 = proc.cpu_times()
        cpu = (c1.user + c1.system) - (c0.user + c0.system)
        best = min(best, (wall, cpu))
    return best


def main(argv: list[str] | None = None) -> None:
    """Run the measurements and print a Markdown table."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    from benchmarks.bench_history import _iceberg_schema, _rows

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_400_000)
    args = parser.parse_args(argv)
    arrow_schema = schema_to_pyarrow(_iceberg_schema(), include_field_ids=True)
    data = _rows(0, args.rows, arrow_schema)
    out = Path(tempfile.mkdtemp(prefix="amoro-writers-"))
    kwargs: dict[str, Any] = {"compression": "zstd", "compression_level": 1}

    def one_file() -> None:
        with pq.ParquetWriter(out / "a.parquet", arrow_schema, **kwargs) as w:
            w.write_table(data, row_group_size=args.rows)

    def groups_from_thread() -> None:
        n = -(-args.rows // 4)
        parts = [data.slice(i * n, n) for i in range(4)]
        with pq.ParquetWriter(out / "b.parquet", arrow_schema, **kwargs) as w:
            worker: threading.Thread | None = None
            for part in parts:
                ready = part.combine_chunks()  # the main thread's share: assembling the next group
                if worker is not None:
                    worker.join()
                worker = threading.Thread(target=w.write_table, args=(ready,), kwargs={"row_group_size": n})
                worker.start()
            if worker is not None:
                worker.join()

    def two_files() -> None:
        half = args.rows // 2

        def write(name: str, part: pa.Table) -> None:
            with pq.ParquetWriter(out / name, arrow_schema, **kwargs) as w:
                w.write_table(part, row_group_size=args.rows)

        threads = [
            threading.Thread(target=write, args=("c1.parquet", data.slice(0, half))),
            threading.Thread(target=write, args=("c2.parquet", data.slice(half))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    rows = [
        ("pyarrow 1 file (execute today)", one_file, ["a.parquet"]),
        ("pyarrow 1 file, 4 groups written from a thread", groups_from_thread, ["b.parquet"]),
        ("pyarrow 2 files at once", two_files, ["c1.parquet", "c2.parquet"]),
    ]
    try:
        import datafusion

        ctx = datafusion.SessionContext()
        frame = ctx.from_arrow(data)

        def datafusion_file() -> None:
            frame.write_parquet(str(out / "d.parquet"), compression="zstd", compression_level=1)

        rows.append(("datafusion 1 file (parallel writer)", datafusion_file, ["d.parquet"]))
    except ImportError:
        pass
    print(f"{args.rows:,} rows, {data.nbytes / 2**20:.0f} MB of Arrow data, {os.cpu_count()} cores")
    print("| writer | wall s | CPU s | MB written | field ids kept |")
    print("|---|---|---|---|---|")
    for name, func, files in rows:
        wall, cpu = _timed(func)
        paths = [out / f for f in files]
        if (out / "d.parquet").is_dir() and "d.parquet" in files:
            paths = list((out / "d.parquet").glob("*.parquet"))
        size = sum(p.stat().st_size for p in paths)
        ids = pq.read_schema(paths[0]).field("id").metadata or {}
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {size / 2**20:.1f} | {b'PARQUET:field_id' in ids} |")


if __name__ == "__main__":
    main()
