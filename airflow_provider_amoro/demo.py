"""``make demo``: build a streaming-style demo table in the embedded lakehouse and show its state.

The demo writes ``demo.orders`` in many small commits (appends and Flink-style upserts with
equality deletes), prints the table's files, then optimizes it and prints the state again.

Run it with ``python -m airflow_provider_amoro.demo`` (``make demo`` does, after setting up
``AIRFLOW_HOME`` and Airflow's database).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import warnings
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_amoro.embedded import embedded_root, load_embedded_catalog
from airflow_provider_amoro.properties import (
    DEFAULT_CONN_ID,
    MAX_TASK_SIZE,
    MINOR_TRIGGER_FILE_COUNT,
    TARGET_SIZE,
)

DEMO_TABLE = "demo.orders"
DEMO_CONNECTION = json.dumps({"conn_type": "amoro", "extra": {"catalog_type": "embedded"}})
"""``amoro_default`` as the demo defines it: the embedded lakehouse, chosen explicitly."""
DEMO_PROPERTIES = {
    # The demo's data is small, so it uses a small target size to show what optimizing does.
    TARGET_SIZE: str(1024 * 1024),
    MAX_TASK_SIZE: str(1024 * 1024),
    MINOR_TRIGGER_FILE_COUNT: "12",
    "format-version": "2",
}
SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.int64(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("customer", pa.string()),
        pa.field("amount", pa.float64()),
        pa.field("status", pa.string()),
        pa.field("updated_at", pa.timestamp("us")),
    ]
)
REGIONS = ["emea", "amer", "apac"]
STATUSES = ["new", "paid", "shipped", "delivered"]


@dataclass
class TableState:
    """Summary of a table's live files, read from its metadata."""

    data_files: int
    delete_files: int
    position_delete_files: int
    equality_delete_files: int
    data_bytes: int
    delete_bytes: int
    records: int
    snapshots: int

    @property
    def avg_data_file_bytes(self) -> float:
        """Average size of a live data file in bytes."""
        return self.data_bytes / self.data_files if self.data_files else 0.0


def table_state(table: Any) -> TableState:
    """Count live data and delete files of ``table`` (metadata only, no data read)."""
    files = table.inspect.files() if table.current_snapshot() else None
    if files is None or files.num_rows == 0:
        return TableState(0, 0, 0, 0, 0, 0, 0, len(table.metadata.snapshots))
    content = files.column("content")
    sizes = files.column("file_size_in_bytes")
    counts = files.column("record_count")

    def total(col: pa.ChunkedArray, mask: pa.ChunkedArray) -> int:
        return int(pc.sum(pc.filter(col, mask)).as_py() or 0)

    data, pos, eq = (pc.equal(content, v) for v in (0, 1, 2))
    deletes = pc.or_(pos, eq)
    return TableState(
        data_files=int(pc.sum(data).as_py() or 0),
        delete_files=int(pc.sum(deletes).as_py() or 0),
        position_delete_files=int(pc.sum(pos).as_py() or 0),
        equality_delete_files=int(pc.sum(eq).as_py() or 0),
        data_bytes=total(sizes, data),
        delete_bytes=total(sizes, deletes),
        records=total(counts, data),
        snapshots=len(table.metadata.snapshots),
    )


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


def format_state(title: str, state: TableState, extra: dict[str, Any] | None = None) -> str:
    """Render a :class:`TableState` as an aligned text block."""
    rows = [
        ("data files", str(state.data_files)),
        (
            "delete files",
            f"{state.delete_files} ({state.position_delete_files} position, "
            f"{state.equality_delete_files} equality)",
        ),
        ("data bytes", _fmt_bytes(state.data_bytes)),
        ("delete bytes", _fmt_bytes(state.delete_bytes)),
        ("average data file", _fmt_bytes(state.avg_data_file_bytes)),
        ("records in data files", str(state.records)),
        ("snapshots", str(state.snapshots)),
    ]
    rows += [(k, str(v)) for k, v in (extra or {}).items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"== {title} =="] + [f"  {k.ljust(width)}  {v}" for k, v in rows])


def _batch(rng: random.Random, start_id: int, n: int) -> pa.Table:
    now = int(time.time() * 1_000_000)
    return pa.table(
        {
            "order_id": pa.array(range(start_id, start_id + n), pa.int64()),
            "region": [rng.choice(REGIONS) for _ in range(n)],
            "customer": [f"customer-{rng.randrange(5000):05d}" for _ in range(n)],
            "amount": [round(rng.uniform(5, 500), 2) for _ in range(n)],
            "status": ["new"] * n,
            "updated_at": pa.array([now] * n, pa.timestamp("us")),
        },
        schema=SCHEMA,
    )


def build_demo_table(catalog: Any, *, commits: int = 60, rows_per_commit: int = 400, seed: int = 7) -> Any:
    """(Re)create ``demo.orders`` and write it in many small commits: appends and upserts."""
    from pyiceberg.transforms import IdentityTransform

    from airflow_provider_amoro.testing.deletes import upsert_with_equality_deletes

    if not catalog.namespace_exists("demo"):
        catalog.create_namespace("demo")
    if catalog.table_exists(DEMO_TABLE):
        catalog.purge_table(DEMO_TABLE)
    table = catalog.create_table(DEMO_TABLE, schema=SCHEMA, properties=DEMO_PROPERTIES)
    with table.update_spec() as spec:
        spec.add_field("region", IdentityTransform(), "region")
    rng = random.Random(seed)
    regions: list[str] = []  # region of each order id, so an upsert stays in its partition
    for i in range(commits):
        if i % 4 == 3 and regions:
            # A CDC-style upsert: some existing orders change status (new row + equality delete).
            ids = sorted(rng.sample(range(len(regions)), min(rows_per_commit // 4, len(regions))))
            rows = _batch(rng, 0, len(ids))
            rows = rows.set_column(0, "order_id", pa.array(ids, pa.int64()))
            rows = rows.set_column(1, "region", pa.array([regions[k] for k in ids]))
            rows = rows.set_column(4, "status", pa.array([rng.choice(STATUSES[1:]) for _ in ids]))
            table = upsert_with_equality_deletes(table, rows.cast(SCHEMA), ["order_id"])
        else:
            batch = _batch(rng, len(regions), rows_per_commit)
            regions.extend(batch.column("region").to_pylist())
            table.append(batch)
    return catalog.load_table(DEMO_TABLE)


def _optimize_with_generated_dag() -> dict[str, Any]:
    """Run the DAG factory's DAG of the demo table once (``dag.test()``); returns lines to print."""
    from airflow_provider_amoro.dag_factory.local_run import run_table_dag

    print(f"\nRunning the generated DAG of {DEMO_TABLE} (dags/amoro.yaml) with dag.test() ...", flush=True)
    started = time.monotonic()
    run = run_table_dag(DEFAULT_CONN_ID, DEMO_TABLE)
    commit = run.commit or {}
    evaluation = run.evaluation or {}
    return {
        "generated DAG": f"{run.dag_id}: {run.state} in {time.monotonic() - started:.1f} s",
        "tasks": ", ".join(f"{task}={state}" for task, state in run.task_states.items()),
        "optimizing": f"{commit.get('kind')}: {commit.get('input_files')} files in, "
        f"{commit.get('output_files')} out, snapshot {commit.get('snapshot_id')}",
        "health score before": evaluation.get("health_score"),
    }


def _ensure_fernet_key() -> None:
    """Give Airflow a Fernet key for this process when its configuration has none.

    Airflow encrypts a connection's extra as soon as it builds the connection (here the demo's,
    from the environment) and warns when no key is configured. The demo stores no secret, so a key
    made up for this process is enough and keeps the summary free of that warning.
    """
    from airflow.configuration import conf

    if conf.get("core", "fernet_key", fallback=""):
        return
    from cryptography.fernet import Fernet

    os.environ["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make demo``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commits", type=int, default=60)
    parser.add_argument("--rows-per-commit", type=int, default=400)
    parser.add_argument("--no-optimize", action="store_true", help="only build and show the table")
    parser.add_argument(
        "--engine", action="store_true", help="optimize with the engine directly instead of the generated DAG"
    )
    args = parser.parse_args(argv)
    # dag.test() talks to Airflow's in-process Execution API through Starlette's TestClient, which
    # warns about its own httpx use: noise in a demo summary, not something a user can act on.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")

    # The hook uses the embedded lakehouse only when a connection says so; the demo's does.
    os.environ["AIRFLOW_CONN_AMORO_DEFAULT"] = DEMO_CONNECTION
    _ensure_fernet_key()
    catalog = load_embedded_catalog()
    print(f"Embedded lakehouse: {embedded_root()} (connection amoro_default, catalog_type embedded)")
    started = time.monotonic()
    table = build_demo_table(catalog, commits=args.commits, rows_per_commit=args.rows_per_commit)
    print(f"Wrote {DEMO_TABLE} in {args.commits} small commits ({time.monotonic() - started:.1f} s)\n")
    before = table_state(table)
    print(format_state(f"{DEMO_TABLE} before optimizing", before))
    if args.no_optimize:
        return 0
    from airflow_provider_amoro.optimizing import optimize
    from airflow_provider_amoro.testing.reader import content_hash, read_table

    rows_before = read_table(table)
    if args.engine:
        result = optimize(table)
        extra = {
            "optimizing": f"{result.kind}: {result.tasks} task(s), {result.input_files} files in, "
            f"{result.output_files} out, {result.duration_s:.1f} s",
            "health score": f"{result.health_before} -> {result.health_after}",
        }
    else:
        extra = _optimize_with_generated_dag()
    table = catalog.load_table(DEMO_TABLE)
    rows_after = read_table(table)
    after = table_state(table)
    same = content_hash(rows_before) == content_hash(rows_after)
    verdict = "identical" if same else "DIFFERENT"
    counts = f"{rows_before.num_rows} before, {rows_after.num_rows} after"
    extra["live rows (iceberg-rust)"] = f"{counts}, content {verdict}"
    print()
    print(format_state(f"{DEMO_TABLE} after optimizing", after, extra))
    if not same:
        print("ERROR: the table's rows changed; please report this")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
