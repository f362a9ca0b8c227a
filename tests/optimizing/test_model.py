"""The plan/result model round-trips through JSON without losing file metadata."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

from airflow_provider_amoro.optimizing.model import (
    FileRef,
    OptimizingPlan,
    RewriteTask,
    TaskResult,
    datafile_from_dict,
    datafile_to_dict,
    decode_partition,
    encode_partition,
)


def test_datafile_round_trip_keeps_every_field() -> None:
    d = {
        "content": "position_deletes",
        "file_path": "s3://b/t/data/x.parquet",
        "file_format": "PARQUET",
        "partition": [3, "emea", None],
        "record_count": 42,
        "file_size_in_bytes": 1234,
        "column_sizes": {"1": 5, "2": 7},
        "value_counts": {"1": 42},
        "null_value_counts": {"1": 0},
        "nan_value_counts": {},
        "lower_bounds": {"2147483546": "YQ=="},
        "upper_bounds": {"2147483546": "eg=="},
        "split_offsets": [4],
        "equality_ids": None,
        "sort_order_id": None,
        "spec_id": 2,
    }
    df = datafile_from_dict(json.loads(json.dumps(d)))
    assert df.record_count == 42 and df.file_size_in_bytes == 1234 and df.spec_id == 2
    assert df.lower_bounds == {2147483546: b"a"}
    assert datafile_to_dict(df) == d


def test_partition_values_of_every_kind_round_trip() -> None:
    from pyiceberg.typedef import Record

    values = Record(
        1, "x", None, b"\x00\xff", Decimal("1.50"), uuid.UUID(int=7), dt.date(2024, 1, 2), 2.5, True
    )
    encoded = encode_partition(values)
    assert decode_partition(json.loads(json.dumps(encoded))) == values


def test_plan_and_result_json_round_trip() -> None:
    ref = FileRef("file:///d.parquet", "data", 100, 10, 0, [1], 3, 3)
    task = RewriteTask(0, "minor", 0, [1], "p=1", rewrite_data_files=[ref], delete_files=[])
    plan = OptimizingPlan("db.t", "minor", 11, 3, 1_700_000_000_000, 1 << 20, tasks=[task])
    again = OptimizingPlan.from_json(plan.to_json())
    assert again == plan and again.tasks[0].input_bytes == 100
    result = TaskResult(0, outputs=[], input_files=1, input_bytes=100, input_records=10)
    assert TaskResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_plan_dict_is_a_copy_with_every_field() -> None:
    """The hand-built ``to_dict`` (faster than ``dataclasses.asdict``) keeps every field, including
    equality ids, position-delete references and tagged partition values, and shares no list with
    the plan, so changing the dict cannot change the plan."""
    import dataclasses

    part = encode_partition([b"\x00\x01", Decimal("1.50"), dt.date(2024, 1, 2)])
    data = FileRef("file:///d.parquet", "data", 100, 10, 0, part, 3, 3, sort_order_id=1)
    eq = FileRef("file:///e.parquet", "equality_deletes", 50, 2, 0, part, 4, 4, equality_ids=[1, 2])
    pos = FileRef(
        "file:///p.parquet", "position_deletes", 40, 1, 0, part, 4, 4, referenced_data_file=data.path
    )
    task = RewriteTask(
        3,
        "major",
        0,
        part,
        "p=x",
        rewrite_data_files=[data],
        rewrite_pos_data_files=[],
        delete_files=[eq, pos],
    )
    plan = OptimizingPlan(
        "db.t",
        "major",
        11,
        4,
        1_700_000_000_000,
        1 << 20,
        tasks=[task],
        partitions=[{"partition": "p=x", "cost": 2.5, "reasons": ["many fragments"]}],
        properties={"self-optimizing.target-size": "1048576"},
    )
    d = plan.to_dict()
    assert d == dataclasses.asdict(plan)
    assert json.dumps(d) == json.dumps(dataclasses.asdict(plan))  # same keys in the same order
    d["tasks"][0]["delete_files"][0]["equality_ids"].append(9)
    d["tasks"][0]["partition"].append(1)
    d["properties"]["x"] = "y"
    assert eq.equality_ids == [1, 2] and task.partition == part and "x" not in plan.properties
    assert OptimizingPlan.from_json(plan.to_json()) == plan
