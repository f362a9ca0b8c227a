"""The factory configuration: YAML errors name the key path, selectors, precedence of properties."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_provider_amoro.dag_factory import ConfigError, load_config, loads
from airflow_provider_amoro.dag_factory.config import (
    CONFIG_ENV_VAR,
    maintenance_disabled_reason,
    parse_duration,
    parse_schedule,
    priority_weight,
    quota_to_tasks,
)

REPO = Path(__file__).resolve().parents[2]

BASE = """
version: 1
optimizer_groups:
  default: {slots: 4}
catalogs:
  lake:
    include: ["sales.*", "ops.events"]
    exclude: ["sales.tmp_*"]
"""


def cfg(extra: str = "", base: str = BASE):
    return loads(textwrap.dedent(base) + textwrap.dedent(extra), source="amoro.yaml")


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        loads(textwrap.dedent(text), source="amoro.yaml")
    return str(info.value)


def test_example_configuration_loads() -> None:
    config = load_config(REPO / "dags" / "amoro.yaml")
    assert list(config.catalogs) == ["amoro_default"]
    group = config.optimizer_groups["default"]
    assert (group.slots, group.pool, group.queue) == (2, "amoro_optimizer_default", None)
    assert config.catalogs["amoro_default"].selects("demo.events")
    assert not config.catalogs["amoro_default"].selects("other.events")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BASE.replace("{slots: 4}", "{slots: x}"),
            "amoro.yaml: optimizer_groups.default.slots: expected a positive integer, got 'x'",
        ),
        (
            BASE.replace("{slots: 4}", "{slots: 0}"),
            "optimizer_groups.default.slots: expected a positive integer",
        ),
        (
            BASE.replace("{slots: 4}", "{slots: true}"),
            "optimizer_groups.default.slots: expected a positive integer",
        ),
        (BASE.replace("{slots: 4}", "{}"), "optimizer_groups.default.slots: missing"),
        (BASE.replace("{slots: 4}", "{slots: 2, slot: 3}"), "optimizer_groups.default.slot: unknown key"),
        (BASE.replace("{slots: 4}", "{slots: 2, pool: 'a b'}"), "optimizer_groups.default.pool: pool names"),
        (BASE + "catalogz: {}\n", "catalogz: unknown key; expected one of: version, cache_dir, catalogs"),
        (
            BASE.replace('["sales.*", "ops.events"]', '["orders"]'),
            "catalogs.lake.include[0]: expected '<namespace>.<table>'",
        ),
        (BASE.replace('["sales.*", "ops.events"]', "17"), "catalogs.lake.include: expected a list of globs"),
        (BASE + "version: 2\n", "duplicate key 'version'"),
        (BASE.replace("version: 1", "version: 2"), "version: unsupported version 2"),
        ("catalogs: {}\noptimizer_groups: {default: {slots: 1}}\n", "catalogs: define at least one catalog"),
        ("catalogs: {lake: {}}\n", "optimizer_groups: define at least one optimizer group"),
        ("- a\n- b\n", "<root>" if False else "expected a mapping, got ['a', 'b']"),
        ("catalogs: [\n", "invalid YAML at line 2"),
        (BASE + "defaults: {schedule: 'every tuesday'}\n", "defaults.schedule: expected a cron expression"),
        (BASE + "defaults: {schedule: '61 * * * *'}\n", "defaults.schedule: invalid cron expression"),
        (
            BASE + "defaults: {maintenance: {expire_snapshot: 1h}}\n",
            "defaults.maintenance.expire_snapshot: unknown maintenance action",
        ),
        (
            BASE + "defaults: {maintenance: {expire_snapshots: soon}}\n",
            "defaults.maintenance.expire_snapshots: expected a duration",
        ),
        (BASE + "defaults: {task_retries: -1}\n", "defaults.task_retries: expected an integer >= 0, got -1"),
        (
            BASE + "defaults: {watch_changes: 'yes'}\n",
            "defaults.watch_changes: expected true or false, got 'yes'",
        ),
        (
            BASE + "defaults: {properties: {self-optimizing.target-size: big}}\n",
            "defaults.properties[\"self-optimizing.target-size\"]: expected an integer, got 'big'",
        ),
        (
            BASE + "defaults: {properties: {self-optimizing.quota: 0}}\n",
            "defaults.properties[\"self-optimizing.quota\"]: must be > 0, got '0'",
        ),
        (
            BASE + "defaults: {properties: {self-optimizing.targetsize: 1}}\n",
            'defaults.properties["self-optimizing.targetsize"]: unknown self-optimizing property',
        ),
        (
            BASE + "defaults: {properties: {write.format: orc}}\n",
            'defaults.properties["write.format"]: not an Amoro table property',
        ),
        (
            BASE + "    tables:\n      'sales.*': {properties: {self-optimizing.fragment-ratio: -1}}\n",
            'catalogs.lake.tables["sales.*"].properties["self-optimizing.fragment-ratio"]: must be > 0',
        ),
        (
            BASE + "    tables:\n      'orders': {}\n",
            "catalogs.lake.tables.orders: expected '<namespace>.<table>'",
        ),
        (
            BASE + "    tables:\n      'sales.*': {priority: 1}\n",
            'catalogs.lake.tables["sales.*"].priority: unknown key',
        ),
        (BASE + "catalog_sync: {evaluate: 1}\n", "catalog_sync.evaluate: expected true or false, got 1"),
        (BASE.replace("  lake:", "  'lake/x':"), 'catalogs["lake/x"]: connection ids may hold'),
    ],
)
def test_mistakes_name_the_key_path_and_the_problem(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_error_message_for_the_brief_example_is_exact() -> None:
    message = error_of(BASE.replace("{slots: 4}", "{slots: x}"))
    assert message == "amoro.yaml: optimizer_groups.default.slots: expected a positive integer, got 'x'"


def test_missing_file_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.yaml")
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    with pytest.raises(ConfigError, match=CONFIG_ENV_VAR):
        load_config()
    path = tmp_path / "x.yaml"
    path.write_text(textwrap.dedent(BASE))
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    assert load_config().source == str(path)


def test_selectors_include_and_exclude_globs() -> None:
    lake = cfg().catalogs["lake"]
    assert lake.selects("sales.orders")
    assert lake.selects("ops.events")
    assert not lake.selects("ops.events_v2")  # an exact include is exact
    assert not lake.selects("sales.tmp_orders")  # excluded
    assert not lake.selects("hr.people")
    # nested namespaces: '*' also crosses dots, as in the hook's list_tables
    assert lake.selects("sales.eu.orders")
    # entries without glob characters are managed even before the first catalog sync
    assert lake.explicit_tables() == ["ops.events"]
    bracket = cfg(base=BASE.replace('["sales.*", "ops.events"]', '["db.t[0-9]"]')).catalogs["lake"]
    assert bracket.selects("db.t1") and not bracket.selects("db.tx")
    assert (
        cfg(base=BASE.replace('    include: ["sales.*", "ops.events"]\n', "")).catalogs["lake"].selects("a.b")
    )


def test_property_precedence_defaults_table_overrides() -> None:
    config = cfg(
        """
        defaults:
          properties:
            self-optimizing.target-size: 1048576
            self-optimizing.quota: 0.25
        """,
        base=BASE
        + """    tables:
      "sales.*":
        properties: {self-optimizing.fragment-ratio: 4}
      "sales.orders":
        properties: {self-optimizing.fragment-ratio: 2, self-optimizing.quota: 3}
""",
    )
    # defaults travel separately and fill in, at run time, only what the table does not set itself:
    # the DAG does not depend on the table's properties
    s = config.resolve("lake", "sales.items", table_properties={"self-optimizing.target-size": "8388608"})
    assert s.property_overrides == {"self-optimizing.fragment-ratio": "4"}
    assert s.property_defaults == {"self-optimizing.target-size": "1048576", "self-optimizing.quota": "0.25"}
    assert s.quota == 0.25
    # per-table overrides win over table properties, the later matching glob wins
    s = config.resolve("lake", "sales.orders", table_properties={"self-optimizing.fragment-ratio": "16"})
    assert s.property_overrides["self-optimizing.fragment-ratio"] == "2"
    assert s.quota == 3 and s.max_active_tasks == 3
    assert "self-optimizing.target-size" not in s.property_overrides


def test_quota_group_retries_and_maintenance_resolution() -> None:
    config = cfg(
        """
        defaults:
          maintenance: {create_tags: off, clean_orphan_files: 2h}
        """,
        base=BASE.replace("{slots: 4}", "{slots: 4, queue: optimizers}\n  big: {slots: 8}"),
    )
    s = config.resolve("lake", "sales.orders")
    assert (s.group.name, s.group.queue, s.quota, s.max_active_tasks, s.execute_retries) == (
        "default",
        "optimizers",
        0.5,
        2,
        5,
    )
    assert s.dag_id == "amoro__lake__sales__orders"
    # every action whose interval is not off: the table's switches are checked at run time
    assert list(s.maintenance) == [
        "expire_snapshots",
        "clean_dangling_delete_files",
        "clean_orphan_files",
        "expire_data",
    ]
    props = {
        "self-optimizing.group": "big",
        "self-optimizing.quota": "0.3",
        "self-optimizing.execute.num-retries": "2",
        "clean-orphan-file.enabled": "true",
        "tag.auto-create.enabled": "true",
        "table-expire.enabled": "false",
    }
    s = config.resolve("lake", "sales.orders", table_properties=props)
    assert (s.group.name, s.group.pool, s.max_active_tasks, s.execute_retries) == (
        "big",
        "amoro_optimizer_big",
        3,
        2,
    )
    assert s.maintenance == {
        "expire_snapshots": timedelta(hours=1),
        "clean_dangling_delete_files": timedelta(hours=1),
        "clean_orphan_files": timedelta(hours=2),
        "expire_data": timedelta(days=1),
    }
    # ... where Amoro's switches decide: gc.enabled=false turns off everything but tags
    assert (
        maintenance_disabled_reason("clean_orphan_files", {})
        == "clean-orphan-file.enabled is false (default)"
    )
    assert maintenance_disabled_reason("clean_orphan_files", props) is None
    assert maintenance_disabled_reason("expire_snapshots", props) == "table-expire.enabled is false"
    off = {"gc.enabled": "false", "tag.auto-create.enabled": "true"}
    assert maintenance_disabled_reason("expire_snapshots", off) == "gc.enabled is false"
    assert maintenance_disabled_reason("create_tags", off) is None
    with pytest.raises(ConfigError, match=r"group .nope. of table lake\.sales\.orders is not defined"):
        config.resolve("lake", "sales.orders", table_properties={"self-optimizing.group": "nope"})


def test_quota_to_tasks_follows_amoro() -> None:
    assert quota_to_tasks(0.5, 2) == 1
    assert quota_to_tasks(0.5, 5) == 3
    assert quota_to_tasks(1, 6) == 6
    assert quota_to_tasks(0.01, 6) == 1
    assert quota_to_tasks(3, 2) == 3  # threads, not capped by the pool (the pool caps anyway)
    assert quota_to_tasks(2.7, 8) == 2


def test_priority_weight_from_cost() -> None:
    assert priority_weight(None) == 1
    assert priority_weight(0) == 1
    assert priority_weight(5 * 1024 * 1024) == 6
    assert priority_weight(10**18) == 1_000_000


def test_durations_and_schedules() -> None:
    assert parse_duration("15min", []) == timedelta(minutes=15)
    assert parse_duration("1.5h", []) == timedelta(minutes=90)
    assert parse_duration(90, []) == timedelta(seconds=90)
    assert parse_duration("off", [], allow_off=True) is None
    with pytest.raises(ConfigError):
        parse_duration("0s", [])
    assert parse_schedule("@hourly", []).cron == "@hourly"
    assert parse_schedule("*/5 * * * *", []).cron == "*/5 * * * *"
    assert parse_schedule("10min", []).every == timedelta(minutes=10)
    assert parse_schedule(None, []).is_off
    assert parse_schedule("off", []).is_off


def test_cache_dir_from_yaml_env_and_airflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMORO_CACHE_DIR", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    assert cfg().cache_dir == tmp_path / "home" / "amoro" / "cache"
    monkeypatch.setenv("AMORO_CACHE_DIR", str(tmp_path / "c"))
    assert cfg().cache_dir == tmp_path / "c"
    assert cfg("cache_dir: /srv/cache\n").cache_dir == Path("/srv/cache")


def test_a_yaml_mistake_is_the_dag_files_import_error_in_airflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a user sees in Airflow: the DagBag's import error names the file, key path and problem."""
    from airflow.dag_processing.dagbag import DagBag

    bad = tmp_path / "amoro.yaml"
    bad.write_text(textwrap.dedent(BASE.replace("{slots: 4}", "{slots: x}")))
    monkeypatch.setenv(CONFIG_ENV_VAR, str(bad))
    bag = DagBag(dag_folder=str(REPO / "dags" / "amoro_dags.py"), safe_mode=False)
    assert bag.dags == {}
    (message,) = bag.import_errors.values()
    assert f"{bad}: optimizer_groups.default.slots: expected a positive integer, got 'x'" in message


BAD_INPUTS = [
    # (YAML under defaults:, key path in the error, words of the error)
    ("schedule: 9999999999999w", "defaults.schedule", "too long"),
    ("retry_delay: 99999999999999999999d", "defaults.retry_delay", "too long"),
    ("execute_timeout: 1.0e+300", "defaults.execute_timeout", "too long"),
    ("maintenance: {expire_snapshots: 9999999999999w}", "defaults.maintenance.expire_snapshots", "too long"),
    (
        "properties: {data-expire.retention-time: 99999999999999999d}",
        "data-expire.retention-time",
        "too long",
    ),
    (
        "properties: {tag.auto-create.trigger.offset.minutes: 99999999999999}",
        "tag.auto-create.trigger.offset.minutes",
        "too long",
    ),
    ("properties: {snapshot.keep.duration: 5 weeks}", "snapshot.keep.duration", "unknown duration unit"),
    ("properties: {data-expire.retention-time: -1d}", "data-expire.retention-time", "expected a duration"),
    (
        "properties: {self-optimizing.full.trigger.interval: 99999999999999999}",
        "full.trigger.interval",
        "too long",
    ),
    ("run_timeout: 1h\n  execute_timeout: 2h", "defaults.run_timeout", "longer than execute_timeout"),
    ("failure_backoff: 1h\n  failure_backoff_max: 5min", "defaults.failure_backoff_max", "at least"),
]


@pytest.mark.parametrize(("defaults", "where", "words"), BAD_INPUTS)
def test_bad_values_are_clear_errors_at_parse_time(defaults: str, where: str, words: str) -> None:
    """Every bad value of issue 14 point 9 fails when the YAML loads, naming the key and the value."""
    text = f"optimizer_groups: {{default: {{slots: 1}}}}\ncatalogs:\n  c: {{}}\ndefaults:\n  {defaults}\n"
    with pytest.raises(ConfigError) as err:
        loads(text)
    message = str(err.value)
    assert where in message and words in message, message
    assert "OverflowError" not in message
