"""Data expiration at file and partition level for timestamp, timestamptz, date, long and string fields."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import (
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    TruncateTransform,
    YearTransform,
)
from pyiceberg.types import (
    DateType,
    DoubleType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
    TimestamptzType,
)

from airflow_provider_amoro.maintenance import InvalidPropertyError, expire_data
from airflow_provider_amoro.testing.deletes import add_position_deletes, live_data_files
from airflow_provider_amoro.testing.reader import read_table

UTC = dt.timezone.utc
EVENTS_SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "ts", TimestampType()),
    NestedField(3, "tz", TimestamptzType()),
    NestedField(4, "d", DateType()),
    NestedField(5, "n", LongType()),
    NestedField(6, "s", StringType()),
    NestedField(7, "x", DoubleType()),
)
EVENTS_ARROW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("us")),
        pa.field("tz", pa.timestamp("us", tz="UTC")),
        pa.field("d", pa.date32()),
        pa.field("n", pa.int64()),
        pa.field("s", pa.string()),
        pa.field("x", pa.float64()),
    ]
)
NOW = dt.datetime(2024, 1, 6, 12, 0, tzinfo=UTC)  # retention 2d -> expiry point 2024-01-04T12:00Z


def _rows(moments: list[dt.datetime], start_id: int) -> pa.Table:
    return pa.table(
        {
            "id": list(range(start_id, start_id + len(moments))),
            "ts": [m.replace(tzinfo=None) for m in moments],
            "tz": moments,
            "d": [m.date() for m in moments],
            "n": [int(m.timestamp() * 1000) for m in moments],
            "s": [m.strftime("%Y-%m-%d") for m in moments],
            "x": [1.0] * len(moments),
        },
        schema=EVENTS_ARROW_SCHEMA,
    )


def _files() -> list[list[dt.datetime]]:
    """One file per day 1..5 (00:00 and 23:00), plus a file with only 2024-01-04T01:00."""
    days = [[dt.datetime(2024, 1, day, h, tzinfo=UTC) for h in (0, 23)] for day in range(1, 6)]
    return [*days, [dt.datetime(2024, 1, 4, 1, tzinfo=UTC)]]


SPECS = {
    "ts": PartitionSpec(PartitionField(2, 1000, DayTransform(), "ts_day")),
    "tz": PartitionSpec(PartitionField(3, 1000, DayTransform(), "tz_day")),
    "d": PartitionSpec(PartitionField(4, 1000, MonthTransform(), "d_month")),
    "n": PartitionSpec(PartitionField(5, 1000, TruncateTransform(86_400_000), "n_day")),
    "s": PartitionSpec(PartitionField(6, 1000, IdentityTransform(), "s")),
}


def _table(catalog: Catalog, field: str, level: str, *, partitioned: bool = True, **props: str) -> Any:
    catalog.create_namespace("ns")
    properties = {
        "data-expire.enabled": "true",
        "data-expire.field": field,
        "data-expire.level": level,
        "data-expire.retention-time": "2d",
        "data-expire.base-on-rule": "CURRENT_TIME",
        **props,
    }
    spec = SPECS[field] if partitioned else UNPARTITIONED_PARTITION_SPEC
    table = catalog.create_table(
        "ns.events", schema=EVENTS_SCHEMA, partition_spec=spec, properties=properties
    )
    next_id = 0
    for moments in _files():
        table.append(_rows(moments, next_id))
        next_id += len(moments)
    return table


def _ids(table: Table) -> set[int]:
    table.refresh()
    return set(read_table(table).column("id").to_pylist())


ALL = set(range(11))
DAYS_1_TO_3 = set(range(6))  # ids of the day 1..3 files
DAY_4 = {6, 7}  # the file with 2024-01-04 00:00 and 23:00
EARLY_DAY_4 = {10}  # the file holding only 2024-01-04T01:00


@pytest.mark.parametrize("field", ["ts", "tz", "d", "n", "s"])
def test_file_level(sqlite_catalog: Catalog, field: str) -> None:
    table = _table(sqlite_catalog, field, "file")
    dry = expire_data(table, now=NOW, dry_run=True)
    assert _ids(table) == ALL and dry.expired_data_files > 0
    result = expire_data(table, now=NOW)
    # strings compare as text: "2024-01-04" equals the formatted expiry point, so day 4 has expired
    expected = (
        DAYS_1_TO_3
        | {
            "ts": EARLY_DAY_4,
            "tz": EARLY_DAY_4,
            "n": EARLY_DAY_4,
            "d": set(),
            "s": DAY_4 | EARLY_DAY_4,
        }[field]
    )
    assert _ids(table) == ALL - expected
    assert result.expired_records == len(expected) == dry.expired_records
    assert table.current_snapshot().summary.operation.value == "delete"
    assert result.cutoff == "2024-01-04T12:00:00+00:00"
    assert expire_data(table, now=NOW).expired_data_files == 0  # idempotent


@pytest.mark.parametrize("field", ["ts", "tz", "d", "n", "s"])
def test_partition_level(sqlite_catalog: Catalog, field: str) -> None:
    table = _table(sqlite_catalog, field, "partition")
    result = expire_data(table, now=NOW)
    # day partitions 1..3 end before the expiry point; day 4 does not, so its early file stays.
    # The month partition (date field) is not over, so nothing goes. An identity string partition
    # "2024-01-04" equals the formatted expiry point: expired.
    expected = {"d": set(), "s": DAYS_1_TO_3 | DAY_4 | EARLY_DAY_4}.get(field, DAYS_1_TO_3)
    assert _ids(table) == ALL - expected
    assert result.expired_data_files == {"d": 0, "s": 5}.get(field, 3)
    assert len(result.expired_partitions) == {"d": 0, "s": 4}.get(field, 3)


def test_partition_level_month_and_unpartitioned(sqlite_catalog: Catalog) -> None:
    table = _table(sqlite_catalog, "d", "partition")
    later = dt.datetime(2024, 2, 3, 0, 0, tzinfo=UTC)  # expiry point 2024-02-01: January is over
    assert expire_data(table, now=later).expired_data_files == 6
    assert _ids(table) == set()


def test_partition_level_needs_a_partition_on_the_field(sqlite_catalog: Catalog) -> None:
    table = _table(sqlite_catalog, "ts", "partition", partitioned=False)
    assert expire_data(table, now=NOW).expired_data_files == 0
    assert _ids(table) == ALL


def test_dangling_deletes_go_with_the_data(sqlite_catalog: Catalog) -> None:
    table = _table(sqlite_catalog, "ts", "file")
    first = min(live_data_files(table), key=lambda f: f.file_path if "2024-01-01" in f.file_path else "~")
    add_position_deletes(table, {first.file_path: [0]})
    result = expire_data(table, now=NOW)
    assert result.expired_delete_files == 1
    producers = [s.summary.additional_properties.get("snapshot-producer") for s in table.snapshots()[-2:]]
    assert producers == ["DATA_EXPIRATION", "DATA_EXPIRATION"]
    assert _ids(table) == ALL - DAYS_1_TO_3 - EARLY_DAY_4
    assert "total-position-deletes" in table.current_snapshot().summary.additional_properties
    assert table.current_snapshot().summary.additional_properties["total-delete-files"] == "0"


def test_nulls_never_expire_and_seconds_format(sqlite_catalog: Catalog) -> None:
    table = _table(
        sqlite_catalog,
        "n",
        "file",
        partitioned=False,
        **{"data-expire.datetime-number-format": "TIMESTAMP_S"},
    )
    # values are milliseconds, read as seconds they lie far in the future: nothing expires
    assert expire_data(table, now=NOW).expired_data_files == 0
    with table.transaction() as tx:
        tx.set_properties({"data-expire.datetime-number-format": "TIMESTAMP_MS"})
    table.append(
        _rows([dt.datetime(2024, 1, 1, tzinfo=UTC)], 100).set_column(4, "n", pa.array([None], pa.int64()))
    )
    old_with_null = _rows([dt.datetime(2024, 1, 1, tzinfo=UTC)] * 2, 200)
    old_with_null = old_with_null.set_column(4, "n", pa.array([1, None], pa.int64()))
    table.append(old_with_null)
    result = expire_data(table, now=NOW)
    assert result.expired_data_files == 4  # days 1..3 and the early day-4 file; not the files with NULLs
    assert {100, 200, 201} <= _ids(table)


def test_last_commit_time_and_switches(sqlite_catalog: Catalog) -> None:
    table = _table(sqlite_catalog, "ts", "file", **{"data-expire.base-on-rule": "LAST_COMMIT_TIME"})
    # the last commit is now (2026+), so with 2 days retention every 2024 row expires
    assert expire_data(table).expired_data_files == 6
    assert _ids(table) == set()
    with table.transaction() as tx:
        tx.set_properties({"gc.enabled": "false"})
    assert expire_data(table).skip_reason == "gc.enabled=false"
    with table.transaction() as tx:
        tx.set_properties({"gc.enabled": "true", "data-expire.enabled": "false"})
    assert expire_data(table).skip_reason == "data-expire.enabled=false"


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("data-expire.level", "row"),
        ("data-expire.retention-time", "two days"),
        ("data-expire.field", "nope"),
        ("data-expire.field", "x"),
        ("data-expire.datetime-number-format", "TIMESTAMP_NS"),
        ("data-expire.base-on-rule", "YESTERDAY"),
        ("data-expire.datetime-string-pattern", "yyyy-MM-dd'T"),
    ],
)
def test_bad_values(sqlite_catalog: Catalog, prop: str, value: str) -> None:
    field = "s" if prop == "data-expire.datetime-string-pattern" else "ts"
    table = _table(sqlite_catalog, field, "file", **{prop: value})
    with pytest.raises(InvalidPropertyError) as info:
        expire_data(table, now=NOW)
    assert prop in str(info.value) and value in str(info.value)


def test_expiry_point_rules() -> None:
    from airflow_provider_amoro.maintenance.config import MaintenanceConfig
    from airflow_provider_amoro.maintenance.data_expire import _Cutoff

    point_ms = int(dt.datetime(2024, 1, 4, 12, tzinfo=UTC).timestamp() * 1000)
    config = MaintenanceConfig(data_expire_datetime_number_format="TIMESTAMP_S")
    ts = _Cutoff(TimestampType(), point_ms, config)
    assert ts.expired(point_ms * 1000) and not ts.expired(point_ms * 1000 + 1)
    seconds = _Cutoff(LongType(), point_ms, config)
    assert seconds.expired(point_ms // 1000) and not seconds.expired(point_ms // 1000 + 1)
    day = _Cutoff(DateType(), point_ms, config)
    jan3, jan4 = ((dt.date(2024, 1, d) - dt.date(1970, 1, 1)).days for d in (3, 4))
    assert day.expired(jan3) and not day.expired(jan4)
    hour = 1704369600 // 3600  # 2024-01-04T12:00 as hours since epoch
    assert ts.partition_expired(HourTransform(), hour - 1) and not ts.partition_expired(HourTransform(), hour)
    assert ts.partition_expired(YearTransform(), 53) and not ts.partition_expired(YearTransform(), 54)
    assert day.partition_expired(MonthTransform(), 647) and not day.partition_expired(MonthTransform(), 648)


def _recent_table(catalog: Catalog) -> tuple[Any, set[int]]:
    """An unpartitioned table with one 2020 file (ids 0, 1) and one file written just now whose
    rows are 1 s old (ids 10, 11), retention 2 s from the last data commit, file level."""
    catalog.create_namespace("ns")
    table = catalog.create_table(
        "ns.recent",
        schema=EVENTS_SCHEMA,
        properties={
            "data-expire.enabled": "true",
            "data-expire.field": "ts",
            "data-expire.level": "file",
            "data-expire.retention-time": "2s",
            "data-expire.base-on-rule": "LAST_COMMIT_TIME",
        },
    )
    table.append(_rows([dt.datetime(2020, 1, 1, h, tzinfo=UTC) for h in (0, 1)], 0))
    written = dt.datetime.now(UTC) - dt.timedelta(seconds=1)
    table.append(_rows([written, written], 10))
    return table, {10, 11}


def test_last_commit_time_ignores_an_optimize_commit_at_the_head(sqlite_catalog: Catalog) -> None:
    """Optimizing alone never moves the expiry point (issue: rows inside the retention were dropped)."""
    from airflow_fixtures import compact_all

    table, recent = _recent_table(sqlite_catalog)
    time.sleep(2.5)  # the optimize commit comes after the retention of the last write has passed
    compact_all(table)
    table.refresh()
    assert table.current_snapshot().summary["snapshot-producer"] == "OPTIMIZE"
    before = _ids(table)

    result = expire_data(table)

    assert result.expired_data_files == 0
    assert _ids(table) == before == {0, 1, *recent}


def test_last_commit_time_ignores_a_maintenance_commit_at_the_head(sqlite_catalog: Catalog) -> None:
    table, recent = _recent_table(sqlite_catalog)
    time.sleep(2.5)
    first = expire_data(table)  # drops the 2020 file: the head is now a DATA_EXPIRATION commit
    assert first.expired_data_files == 1 and _ids(table) == recent
    table.refresh()
    assert table.current_snapshot().summary["snapshot-producer"] == "DATA_EXPIRATION"

    again = expire_data(table)

    assert again.expired_data_files == 0
    assert _ids(table) == recent
    # A new data commit moves the base: then the old rows have expired.
    time.sleep(2.5)
    table.append(_rows([dt.datetime.now(UTC)], 20))
    assert expire_data(table).expired_data_files == 1
    assert _ids(table) == {20}


@pytest.mark.parametrize("pattern", ["dd-MM-yyyy", "yy-MM-dd", "yyyy-M-d", "yyyy-dd", "MM/dd/yyyy"])
def test_string_patterns_that_do_not_sort_as_text_are_refused(sqlite_catalog: Catalog, pattern: str) -> None:
    """With dd-MM-yyyy, rows dated 2099 used to expire: the text 01-01-2099 sorts before 04-01-2024."""
    table = _table(sqlite_catalog, "s", "file", **{"data-expire.datetime-string-pattern": pattern})
    table.append(
        pa.Table.from_pylist(
            [{"id": 100, "s": "01-01-2099"}, {"id": 101, "s": "31-12-2099"}], schema=EVENTS_ARROW_SCHEMA
        )
    )
    before = _ids(table)
    with pytest.raises(InvalidPropertyError) as info:
        expire_data(table, now=NOW)
    assert "data-expire.datetime-string-pattern" in str(info.value) and pattern in str(info.value)
    assert "sort as text" in str(info.value)
    assert _ids(table) == before


@pytest.mark.parametrize("pattern", ["yyyy-MM-dd", "yyyyMMdd", "'d='yyyy-MM-dd HH:mm:ss.SSS", "yyyy-MM"])
def test_string_patterns_that_sort_as_text_are_accepted(pattern: str) -> None:
    from airflow_provider_amoro.maintenance.datefmt import check_sorts_as_text

    check_sorts_as_text("data-expire.datetime-string-pattern", pattern)
