"""OptimizingConfig: Amoro property names, defaults, derived sizes and every bad-value error."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog

from airflow_provider_amoro.optimizing import InvalidPropertyError, OptimizingConfig
from airflow_provider_amoro.optimizing import config as c


def test_defaults_are_amoros() -> None:
    cfg = OptimizingConfig.from_properties({})
    assert cfg == OptimizingConfig()
    assert cfg.enabled is True
    assert cfg.group == "default"
    assert cfg.quota == 0.5
    assert cfg.execute_num_retries == 5
    assert cfg.target_size == 134217728
    assert cfg.max_task_size_bytes == 134217728
    assert cfg.fragment_ratio == 8
    assert cfg.min_target_size_ratio == 0.75
    assert cfg.minor_trigger_file_count == 12
    assert cfg.minor_trigger_interval_ms == 3600000
    assert cfg.major_duplicate_ratio == 0.1
    assert cfg.full_trigger_interval_ms == -1
    assert cfg.full_rewrite_all_files is True
    assert cfg.allow_partial_commit is False
    assert cfg.filter is None
    assert cfg.min_plan_interval_ms == 60000
    # derived sizes of the semantics doc: 16 MB fragments, 96 MB min target size
    assert cfg.fragment_size == 16 * 1024 * 1024
    assert cfg.min_target_size == 96 * 1024 * 1024
    assert cfg.max_task_size == 134217728


def test_every_property_is_read_and_round_trips() -> None:
    props = {
        c.ENABLED: "FALSE",
        c.GROUP: "big",
        c.QUOTA: "4",
        c.EXECUTE_NUM_RETRIES: "2",
        c.TARGET_SIZE: "1048576",
        c.MAX_TASK_SIZE: "4194304",
        c.FRAGMENT_RATIO: "4",
        c.MIN_TARGET_SIZE_RATIO: "0.5",
        c.MINOR_TRIGGER_FILE_COUNT: "3",
        c.MINOR_TRIGGER_INTERVAL: "1000",
        c.MAJOR_TRIGGER_DUPLICATE_RATIO: "0.25",
        c.FULL_TRIGGER_INTERVAL: "86400000",
        c.FULL_REWRITE_ALL_FILES: "false",
        c.ALLOW_PARTIAL_COMMIT: "true",
        c.FILTER: "id > 10",
        c.MIN_PLAN_INTERVAL: "0",
        "write.format.default": "parquet",  # unrelated properties are ignored
    }
    cfg = OptimizingConfig.from_properties(props)
    assert (cfg.enabled, cfg.group, cfg.quota, cfg.execute_num_retries) == (False, "big", 4.0, 2)
    assert (cfg.target_size, cfg.max_task_size_bytes, cfg.fragment_ratio) == (1048576, 4194304, 4.0)
    assert cfg.fragment_size == 262144
    assert cfg.min_target_size == 524288
    assert cfg.max_task_size == 4194304
    assert (cfg.minor_trigger_file_count, cfg.minor_trigger_interval_ms) == (3, 1000)
    assert (cfg.major_duplicate_ratio, cfg.full_trigger_interval_ms) == (0.25, 86400000)
    assert (cfg.full_rewrite_all_files, cfg.allow_partial_commit, cfg.min_plan_interval_ms) == (
        False,
        True,
        0,
    )
    assert cfg.filter == "id > 10"
    assert set(cfg.to_properties()) == set(c.PROPERTY_NAMES)
    assert OptimizingConfig.from_properties(cfg.to_properties()) == cfg


def test_max_task_size_is_at_least_target_size() -> None:
    cfg = OptimizingConfig.from_properties({c.TARGET_SIZE: "1000", c.MAX_TASK_SIZE: "10"})
    assert cfg.max_task_size == 1000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (c.ENABLED, "yes"),
        (c.FULL_REWRITE_ALL_FILES, "1"),
        (c.ALLOW_PARTIAL_COMMIT, ""),
        (c.TARGET_SIZE, "abc"),
        (c.TARGET_SIZE, "-1"),
        (c.TARGET_SIZE, "0"),
        (c.TARGET_SIZE, "1.5"),
        (c.MAX_TASK_SIZE, "-5"),
        (c.MAX_TASK_SIZE, "big"),
        (c.FRAGMENT_RATIO, "0"),
        (c.FRAGMENT_RATIO, "-8"),
        (c.FRAGMENT_RATIO, "eight"),
        (c.MIN_TARGET_SIZE_RATIO, "0"),
        (c.MIN_TARGET_SIZE_RATIO, "nan"),
        (c.MAJOR_TRIGGER_DUPLICATE_RATIO, "-0.1"),
        (c.MAJOR_TRIGGER_DUPLICATE_RATIO, "0"),
        (c.QUOTA, "0"),
        (c.QUOTA, "x"),
        (c.EXECUTE_NUM_RETRIES, "-1"),
        (c.MINOR_TRIGGER_FILE_COUNT, "0"),
        (c.MINOR_TRIGGER_INTERVAL, "1h"),
        (c.FULL_TRIGGER_INTERVAL, "never"),
        (c.MIN_PLAN_INTERVAL, "-1"),
        (c.GROUP, "  "),
        (c.FILTER, "id = = 3"),
        (c.FILTER, "id >"),
    ],
)
def test_bad_values_name_property_and_value(name: str, value: str) -> None:
    with pytest.raises(InvalidPropertyError) as info:
        OptimizingConfig.from_properties({name: value})
    assert isinstance(info.value, ValueError)
    assert name in str(info.value)
    assert repr(value) in str(info.value)
    assert info.value.name == name


def test_negative_intervals_mean_never_and_are_valid() -> None:
    cfg = OptimizingConfig.from_properties({c.MINOR_TRIGGER_INTERVAL: "-1", c.FULL_TRIGGER_INTERVAL: "-1"})
    assert cfg.minor_trigger_interval_ms == -1
    assert cfg.full_trigger_interval_ms == -1


def test_from_table_binds_filter_to_schema(sqlite_catalog: Catalog) -> None:
    sqlite_catalog.create_namespace("db")
    schema = pa.schema([("id", pa.int64()), ("day", pa.string())])
    table = sqlite_catalog.create_table(
        "db.t",
        schema=schema,
        properties={c.TARGET_SIZE: "2097152", c.FILTER: "day >= '2024-01-02' and id < 5"},
    )
    cfg = OptimizingConfig.from_table(table)
    assert cfg.target_size == 2097152
    assert cfg.bound_filter(table.schema()) is not None

    with table.transaction() as tx:
        tx.set_properties({c.FILTER: "no_such_column = 1"})
    table = sqlite_catalog.load_table("db.t")
    with pytest.raises(InvalidPropertyError, match="no_such_column"):
        OptimizingConfig.from_table(table)
    # without a schema only the syntax is checked
    assert OptimizingConfig.from_properties(table.properties).filter == "no_such_column = 1"

    with table.transaction() as tx:
        tx.set_properties({c.FILTER: "id = 'abc'"})
    table = sqlite_catalog.load_table("db.t")
    with pytest.raises(InvalidPropertyError, match="filter"):
        OptimizingConfig.from_table(table)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(InvalidPropertyError, match="target-size"):
        OptimizingConfig(target_size=0)
    assert OptimizingConfig().replace(target_size=10).target_size == 10
