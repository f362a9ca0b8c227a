"""Deterministic synthetic rows and Parquet files for the benchmarks (no network, no data sets).

Rows look like an event table: sequential ``id``, random ``user_id``, a timestamp, a low-cardinality
``category``, a double ``amount`` and a random 16-character ``note`` (which keeps files from
compressing to nothing: about 22-26 bytes per row in zstd Parquet).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BYTES_PER_ROW_SMALL = 26.1
"""Measured zstd Parquet bytes per row of :func:`rows` in files of about 100 KB."""
BYTES_PER_ROW_LARGE = 22.3
"""Measured zstd Parquet bytes per row of :func:`rows` in files of 1 MB and more."""

CATEGORIES = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"])
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("user_id", pa.int64()),
        ("ts", pa.timestamp("us")),
        ("category", pa.string()),
        ("amount", pa.float64()),
        ("note", pa.string()),
    ]
)


def rows(start: int, n: int, seed: int) -> pa.Table:
    """``n`` rows with ids ``start .. start+n-1``; the same arguments always give the same rows."""
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n, dtype=np.int64)
    note = np.frombuffer(rng.bytes(8 * n).hex().encode("ascii"), dtype="S16")
    return pa.Table.from_arrays(
        [
            pa.array(ids),
            pa.array(rng.integers(0, 1_000_000, n, dtype=np.int64)),
            pa.array(1_700_000_000_000_000 + ids * 1000, type=pa.int64()).cast(pa.timestamp("us")),
            pa.array(CATEGORIES[rng.integers(0, len(CATEGORIES), n)]),
            pa.array(rng.normal(100.0, 30.0, n).round(2)),
            pa.array(note, type=pa.binary()).cast(pa.string()),
        ],
        schema=SCHEMA,
    )


def rows_for_size(file_bytes: int) -> int:
    """Rows that make a zstd Parquet file of about ``file_bytes``."""
    per_row = BYTES_PER_ROW_LARGE if file_bytes >= 1_000_000 else BYTES_PER_ROW_SMALL
    return max(1, int(file_bytes / per_row))


def write_files(folder: Path, count: int, file_bytes: int, *, seed: int = 0) -> list[str]:
    """Write ``count`` zstd Parquet files of about ``file_bytes`` each; return their ``file://`` URIs.

    Ids are consecutive across files, so file ``i`` holds ids ``i*n .. (i+1)*n-1``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = rows_for_size(file_bytes)
    uris = []
    for i in range(count):
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(rows(i * n, n, seed * 1_000_003 + i), path, compression="zstd")
        uris.append(path.as_uri())
    return uris
