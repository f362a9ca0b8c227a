"""Randomised histories of appends, deletes, upserts and optimizes against an in-memory model.

Every row has a unique version string ``v`` (``"<id>.<version>"``), so the model is a dict
``id -> v`` and a position delete can find the physical row that is visible. After every step the
independent reader (iceberg-rust) must return exactly the model's rows: no row lost, duplicated or
resurrected by any optimizing kind, on an unpartitioned and on a bucket-partitioned table.
``racing_optimize`` lets another writer commit between execute and commit: the optimizer's commit
is then either refused (outputs deleted) or correct (the writer's change survives).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from catalogs import make_catalog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import LongType, NestedField, StringType

from airflow_provider_amoro.optimizing.commit import CommitValidationError, commit
from airflow_provider_amoro.optimizing.execute import execute
from airflow_provider_amoro.optimizing.optimize import optimize
from airflow_provider_amoro.optimizing.plan import plan as make_plan
from airflow_provider_amoro.testing.deletes import (
    add_equality_deletes,
    add_position_deletes,
    live_data_files,
    upsert_with_equality_deletes,
)
from airflow_provider_amoro.testing.reader import read_table

REQUIRED_ID_V_SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True), NestedField(2, "v", StringType(), required=True)
)
PROPS = {
    "self-optimizing.target-size": str(64 * 1024),
    "self-optimizing.max-task-size-bytes": str(64 * 1024),
    "self-optimizing.minor.trigger.file-count": "3",
}

ops = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 30)),
    st.tuples(st.just("pos_delete"), st.lists(st.integers(0, 10_000), min_size=1, max_size=5)),
    st.tuples(st.just("eq_delete"), st.lists(st.integers(0, 10_000), min_size=1, max_size=5)),
    st.tuples(st.just("upsert"), st.lists(st.integers(0, 10_000), min_size=1, max_size=6, unique=True)),
    st.tuples(st.just("optimize"), st.sampled_from(["auto", "minor", "major", "full"])),
    st.tuples(
        st.just("racing_optimize"),
        st.tuples(
            st.sampled_from(["auto", "minor", "major", "full"]),
            st.sampled_from(["append", "pos_delete", "eq_delete", "upsert"]),
            st.lists(st.integers(0, 10_000), min_size=1, max_size=5, unique=True),
        ),
    ),
)


class History:
    """A table and its model: ``id -> v``."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.model: dict[int, str] = {}
        self.next_id = itertools.count()
        self.version = itertools.count()

    def _rows(self, ids: list[int]) -> pa.Table:
        vs = [f"{i}.{next(self.version)}" for i in ids]
        return pa.table(
            {"id": pa.array(ids, pa.int64()), "v": pa.array(vs)}, schema=REQUIRED_ID_V_SCHEMA.as_arrow()
        )

    def _pick(self, seeds: list[int]) -> list[int]:
        ids = sorted(self.model)
        return sorted({ids[s % len(ids)] for s in seeds}) if ids else []

    def append(self, n: int) -> None:
        data = self._rows([next(self.next_id) for _ in range(n)])
        self.table.append(data)
        self.model.update(zip(data.column("id").to_pylist(), data.column("v").to_pylist(), strict=True))

    def pos_delete(self, seeds: list[int]) -> None:
        targets = {i: self.model[i] for i in self._pick(seeds)}
        if not targets:
            return
        wanted = pa.array(list(targets.values()))
        deletes: dict[str, list[int]] = {}
        for df in live_data_files(self.table):
            with self.table.io.new_input(df.file_path).open() as stream:
                vs = pq.read_table(stream, columns=["v"]).column("v")
            positions = pc.indices_nonzero(pc.is_in(vs, value_set=wanted)).to_pylist()
            if positions:
                deletes[df.file_path] = positions
        assert sum(len(p) for p in deletes.values()) == len(targets)
        add_position_deletes(self.table, deletes)
        for i in targets:
            del self.model[i]

    def eq_delete(self, seeds: list[int]) -> None:
        ids = self._pick(seeds)
        if not ids:
            return
        add_equality_deletes(self.table, self._rows(ids), ["id"])
        for i in ids:
            del self.model[i]

    def upsert(self, seeds: list[int]) -> None:
        existing = self._pick(seeds[: len(seeds) // 2])
        ids = sorted({*existing, *(next(self.next_id) for _ in seeds[len(seeds) // 2 :])})
        data = self._rows(ids)
        upsert_with_equality_deletes(self.table, data, ["id"])
        self.model.update(zip(ids, data.column("v").to_pylist(), strict=True))

    def optimize(self, kind: str) -> None:
        optimize(self.table, kind, max_workers=2)

    def racing_optimize(self, arg: tuple[str, str, list[int]]) -> None:
        """Plan and execute, let another writer commit, then commit: refused or correct, never wrong."""
        kind, op, seeds = arg
        plan = make_plan(self.table, None if kind == "auto" else kind)  # type: ignore[arg-type]
        results = [execute(self.table, task) for task in plan.tasks]
        self._concurrent(op, seeds)
        if not plan.tasks:
            return
        try:
            commit(self.table, plan, results)
        except CommitValidationError:
            outputs = [o["file_path"] for r in results for o in r.outputs]
            assert not any(self.table.io.new_input(p).exists() for p in outputs)

    def _concurrent(self, op: str, seeds: list[int]) -> None:
        if op == "append":
            self.append(len(seeds))
        else:
            getattr(self, op)(seeds)

    def check(self, step: str) -> None:
        self.table.refresh()
        got = read_table(self.table)
        pairs = sorted(zip(got.column("id").to_pylist(), got.column("v").to_pylist(), strict=True))
        assert pairs == sorted(self.model.items()), f"after {step}"


def _new_table(partitioned: bool, root: Path) -> Any:
    catalog = make_catalog("sqlite", root)
    catalog.create_namespace("db")
    spec = (
        PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=BucketTransform(2), name="b"))
        if partitioned
        else PartitionSpec()
    )
    return catalog.create_table("db.t", schema=REQUIRED_ID_V_SCHEMA, partition_spec=spec, properties=PROPS)


@pytest.mark.parametrize("partitioned", [False, True], ids=["unpartitioned", "bucket"])
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(history=st.lists(ops, min_size=3, max_size=12))
def test_random_histories_match_the_model(partitioned: bool, history: list[tuple[str, Any]]) -> None:
    root = Path(tempfile.mkdtemp(prefix="amoro-prop-"))
    try:
        h = History(_new_table(partitioned, root))
        h.append(20)
        h.check("first append")
        for n, (op, arg) in enumerate(history):
            getattr(h, op)(arg)
            h.check(f"step {n}: {op}({arg!r})")
        h.optimize("full")
        h.check("final full optimizing")
        h.table.refresh()
        assert h.table.current_snapshot().summary["total-delete-files"] == "0"
    finally:
        shutil.rmtree(root, ignore_errors=True)
