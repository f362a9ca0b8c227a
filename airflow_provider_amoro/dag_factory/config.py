"""The DAG factory configuration: ``dags/amoro.yaml`` loaded, validated and resolved per table.

This module imports neither Airflow nor pyiceberg, so loading the configuration costs milliseconds
while a DAG file is parsed. Every mistake raises :class:`~.errors.ConfigError` naming the key path,
e.g. ``optimizer_groups.default.slots: expected a positive integer, got 'x'``. See
``docs/dag_factory.md`` for the full reference.

Property precedence for one table, lowest first::

    Amoro's built-in defaults < defaults.properties < the table's own properties
        < catalogs.<conn>.tables.<glob>.properties (overrides; later matching globs win)

Only the two configured layers travel to the engine (as property overrides applied over the table's
properties at evaluation time); ``defaults.properties`` keys that the table sets itself (as last seen
by the catalog sync) are left out, so the table's own value wins.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from airflow_provider_amoro.dag_factory.errors import ConfigError, KeyPath, describe
from airflow_provider_amoro.properties import (
    AMORO_PROPERTY_PREFIXES,
    EXECUTE_NUM_RETRIES,
    EXECUTE_NUM_RETRIES_DEFAULT,
    GC_ENABLED,
    GROUP,
    GROUP_DEFAULT,
    MAINTENANCE_ACTIONS,
    MAINTENANCE_ACTIONS_BY_NAME,
    QUOTA,
    QUOTA_DEFAULT,
)
from airflow_provider_amoro.runtime.state import table_dag_id

CONFIG_ENV_VAR = "AMORO_DAGS_CONFIG"
"""Environment variable holding the configuration file path (default: ``amoro.yaml`` beside the DAG file)."""

CACHE_DIR_ENV_VAR = "AMORO_CACHE_DIR"
"""Environment variable overriding the table-list location, a path or URL.

The default is ``$AIRFLOW_HOME/amoro/cache`` (single machine only)."""

CATALOG_SYNC_DAG_ID = "amoro__catalog_sync"

#: Default interval between two runs of each maintenance action (Amoro's AMS defaults).
DEFAULT_MAINTENANCE_INTERVALS: dict[str, timedelta | None] = {
    a.name: a.default_interval for a in MAINTENANCE_ACTIONS
}

_GLOB_CHARS = frozenset("*?[")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")
_DURATION_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
MAX_DURATION = timedelta(days=36500)
"""The longest duration the configuration accepts (100 years); longer ones are a mistake."""
_OFF = frozenset({"off", "never", "none", "false", "disabled"})
_CRON_PRESETS = frozenset({"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"})


# --------------------------------------------------------------------------------------------------
# value parsers


def _expect_mapping(value: Any, path: KeyPath, *, allow_none: bool = True) -> Mapping[str, Any]:
    if value is None and allow_none:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected a mapping, got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError([*path, str(key)], f"keys must be strings, got {describe(key)}")
    return value


def _check_keys(mapping: Mapping[str, Any], path: KeyPath, allowed: Iterator[str] | tuple[str, ...]) -> None:
    allowed_set = tuple(allowed)
    for key in mapping:
        if key not in allowed_set:
            close = ", ".join(allowed_set)
            raise ConfigError([*path, key], f"unknown key; expected one of: {close}")


def _positive_int(value: Any, path: KeyPath) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(path, f"expected a positive integer, got {describe(value)}")
    return value


def _non_negative_int(value: Any, path: KeyPath) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(path, f"expected an integer >= 0, got {describe(value)}")
    return value


def _bool(value: Any, path: KeyPath) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {describe(value)}")
    return value


def _name(value: Any, path: KeyPath) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, f"expected a non-empty string, got {describe(value)}")
    return value.strip()


def parse_duration(value: Any, path: KeyPath, *, allow_off: bool = False) -> timedelta | None:
    """Parse ``30s``, ``15min``, ``1h``, ``1d``, ``2w`` (or a number of seconds) into a timedelta.

    Args:
        value: the YAML value.
        path: its key path, for the error message.
        allow_off: accept ``null``, ``false``, ``off`` or ``never``, returning None (disabled).

    Raises:
        ConfigError: the value is not a positive duration.
    """
    if allow_off and (value is None or value is False or (isinstance(value, str) and value.lower() in _OFF)):
        return None
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        unit = _DURATION_UNITS.get(m.group(2).lower())
        if unit is not None:
            seconds = float(m.group(1)) * unit
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        extra = " or off" if allow_off else ""
        raise ConfigError(
            path, f"expected a duration such as 30s, 15min, 1h, 1d (or seconds){extra}, got {describe(value)}"
        )
    if seconds > MAX_DURATION.total_seconds():
        raise ConfigError(
            path, f"duration too long (at most {MAX_DURATION.days} days), got {describe(value)}"
        )
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class ScheduleSpec:
    """The fallback time schedule of a table DAG.

    Attributes:
        cron: a cron expression or preset (``@hourly``), or None.
        every: a fixed interval, or None. At most one of ``cron`` and ``every`` is set; neither
            means no time-based runs (only table changes and manual triggers).
    """

    cron: str | None = None
    every: timedelta | None = None

    @property
    def is_off(self) -> bool:
        """True when there is no time-based schedule."""
        return self.cron is None and self.every is None


def parse_schedule(value: Any, path: KeyPath) -> ScheduleSpec:
    """Parse a fallback schedule: a cron expression, a preset, a duration, or ``null``/``off``.

    Raises:
        ConfigError: the value is none of those.
    """
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
        return ScheduleSpec()
    if isinstance(value, str):
        text = value.strip()
        if text in _CRON_PRESETS:
            return ScheduleSpec(cron=text)
        if len(text.split()) in (5, 6):
            from croniter import croniter

            if not croniter.is_valid(text):
                raise ConfigError(path, f"invalid cron expression {describe(value)}")
            return ScheduleSpec(cron=text)
    try:
        return ScheduleSpec(every=parse_duration(value, path))
    except ConfigError as exc:
        if "too long" in str(exc):
            raise
        raise ConfigError(
            path,
            f"expected a cron expression, a preset such as @hourly, a duration such as 30min, or off; "
            f"got {describe(value)}",
        ) from None


def _property_value(value: Any, path: KeyPath) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(path, f"expected a finite number, got {describe(value)}")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    raise ConfigError(path, f"expected a string, number or boolean, got {describe(value)}")


def parse_properties(value: Any, path: KeyPath) -> dict[str, str]:
    """Parse a mapping of Amoro table properties into strings, validating names and values.

    ``self-optimizing.*`` names must be ones the engine knows, and their values must parse (the
    engine's own parser decides); other Amoro families (``table-expire.*``, ``snapshot.keep.*``,
    ``clean-orphan-file.*``, ``data-expire.*``, ``tag.auto-create.*``, ``gc.*``) are passed on as given.

    Raises:
        ConfigError: an unknown or non-Amoro property name, or a value the engine rejects.
    """
    property_names = _engine_config().PROPERTY_NAMES
    mapping = _expect_mapping(value, path)
    out: dict[str, str] = {}
    for key, raw in mapping.items():
        kpath = [*path, key]
        if not key.startswith(AMORO_PROPERTY_PREFIXES):
            raise ConfigError(
                kpath,
                "not an Amoro table property (expected a name starting with one of: "
                f"{', '.join(AMORO_PROPERTY_PREFIXES)})",
            )
        if key.startswith("self-optimizing.") and key not in property_names:
            raise ConfigError(kpath, "unknown self-optimizing property")
        out[key] = _property_value(raw, kpath)
    validate_optimizing_properties(out, path)
    validate_maintenance_properties(out, path)
    return out


_ENGINE_CONFIG = "airflow_provider_amoro.optimizing.config"
_MAINTENANCE_CONFIG = "airflow_provider_amoro.maintenance.config"


def _engine_config() -> Any:
    """The engine's property parser (``airflow_provider_amoro.optimizing.config``), loaded cheaply.

    Importing it the usual way first runs ``airflow_provider_amoro/optimizing/__init__.py``, which
    loads the whole engine with pyarrow and pyiceberg: about 0.65 s of CPU, a third of the parse
    time of 1,000 tables, for a module that itself imports nothing heavy. When the engine package
    is not loaded yet, the module is loaded from its file and registered under its real name, so a
    later ``import airflow_provider_amoro.optimizing`` reuses this very module (same classes).
    """
    return _light_module(_ENGINE_CONFIG, "optimizing")


def _maintenance_config() -> Any:
    """The maintenance property parser (``airflow_provider_amoro.maintenance.config``), loaded cheaply."""
    _engine_config()  # it imports the optimizing parser: load that one cheaply first
    return _light_module(_MAINTENANCE_CONFIG, "maintenance")


def _light_module(name: str, package: str) -> Any:
    module = sys.modules.get(name)
    if module is not None:
        return module
    if f"airflow_provider_amoro.{package}" in sys.modules:
        return importlib.import_module(name)
    import airflow_provider_amoro

    path = Path(airflow_provider_amoro.__file__).parent / package / "config.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - the file ships with the package
        return importlib.import_module(name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def validate_optimizing_properties(props: Mapping[str, str], path: KeyPath) -> None:
    """Check ``self-optimizing.*`` values with the engine's parser; raise ConfigError at the key."""
    relevant = {k: v for k, v in props.items() if k.startswith("self-optimizing.")}
    if not relevant:
        return
    engine = _engine_config()
    try:
        engine.OptimizingConfig.from_properties(relevant)
    except engine.InvalidPropertyError as exc:
        problem = str(exc).split(": ", 1)[-1]
        raise ConfigError([*path, exc.name], f"{problem}, got {describe(exc.value)}") from None


def validate_maintenance_properties(props: Mapping[str, str], path: KeyPath) -> None:
    """Check maintenance property values (``snapshot.keep.*``, ``data-expire.*``, …) with the parser
    the maintenance tasks use, so a bad value is an error when the YAML loads, not at run time."""
    relevant = {k: v for k, v in props.items() if not k.startswith("self-optimizing.")}
    if not relevant:
        return
    maintenance = _maintenance_config()
    try:
        maintenance.MaintenanceConfig.from_properties(relevant)
    except maintenance.InvalidPropertyError as exc:
        problem = str(exc).split(": ", 1)[-1]
        raise ConfigError([*path, exc.name], f"{problem}, got {describe(exc.value)}") from None


def parse_maintenance(value: Any, path: KeyPath) -> dict[str, timedelta | None]:
    """Parse ``{action: interval | off}``; unknown action names are errors."""
    mapping = _expect_mapping(value, path)
    out: dict[str, timedelta | None] = {}
    for key, raw in mapping.items():
        if key not in MAINTENANCE_ACTIONS_BY_NAME:
            raise ConfigError(
                [*path, key],
                f"unknown maintenance action; expected one of: {', '.join(MAINTENANCE_ACTIONS_BY_NAME)}",
            )
        out[key] = parse_duration(raw, [*path, key], allow_off=True)
    return out


def _globs(value: Any, path: KeyPath, *, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list of globs such as 'sales.*', got {describe(value)}")
    out = []
    for i, item in enumerate(value):
        text = _name(item, [*path, i])
        if "." not in text and text != "*":
            raise ConfigError(
                [*path, i],
                f"expected '<namespace>.<table>' (globs allowed, e.g. 'demo.*'), got {describe(item)}",
            )
        out.append(text)
    return tuple(out)


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` has glob characters (``*``, ``?``, ``[``)."""
    return any(c in _GLOB_CHARS for c in pattern)


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def glob_match(identifier: str, pattern: str) -> bool:
    """Case-sensitive shell-glob match of ``namespace.table`` (``*`` also matches dots)."""
    return _glob_regex(pattern).match(identifier) is not None


# --------------------------------------------------------------------------------------------------
# configuration objects


@dataclass(frozen=True)
class OptimizerGroup:
    """An optimizer group: an Airflow pool (and optionally a Celery/Kubernetes queue).

    Attributes:
        name: the group name (``self-optimizing.group``).
        pool: the Airflow pool its execute tasks run in.
        slots: the pool's slots (Amoro: the group's threads).
        queue: the executor queue of its tasks, or None for the default queue (CeleryExecutor).
        description: shown in the pool list.
        executor: the Airflow executor of its execute tasks (``KubernetesExecutor``,
            ``CeleryExecutor``, an alias from ``[core] executor``), or None for the default one.
        executor_config: the execute tasks' ``executor_config``; for the KubernetesExecutor a
            ``pod_override`` given as a pod spec mapping (resources, node selector, ...).
        max_input_bytes: input cap of one optimizing process of a table in this group (bytes of
            input files); the most valuable partitions go first, the rest waits. None: no cap.
    """

    name: str
    pool: str
    slots: int
    queue: str | None = None
    description: str = ""
    executor: str | None = None
    executor_config: Mapping[str, Any] = field(default_factory=dict)
    max_input_bytes: int | None = None


@dataclass(frozen=True)
class TableRule:
    """Per-table settings for every table whose ``namespace.table`` matches ``pattern``.

    Unset fields (None) leave the defaults in place.
    """

    pattern: str
    properties: Mapping[str, str] = field(default_factory=dict)
    maintenance: Mapping[str, timedelta | None] = field(default_factory=dict)
    schedule: ScheduleSpec | None = None
    watch_changes: bool | None = None
    paused_at_creation: bool | None = None
    priority_weight: int | None = None


@dataclass(frozen=True)
class CatalogConfig:
    """A catalog (an Airflow connection id) and which of its tables are managed.

    Attributes:
        conn_id: the Airflow connection id (type ``amoro``).
        include: globs over ``namespace.table``; a table must match one.
        exclude: globs; a table matching one is not managed.
        tables: per-table rules in file order (a later match wins).
        paused_at_creation: whether this catalog's table DAGs start paused (None: the default).
    """

    conn_id: str
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    tables: tuple[TableRule, ...] = ()
    paused_at_creation: bool | None = None

    def selects(self, identifier: str) -> bool:
        """Whether ``namespace.table`` is managed: matches an include glob and no exclude glob."""
        return any(glob_match(identifier, p) for p in self.include) and not any(
            glob_match(identifier, p) for p in self.exclude
        )

    def explicit_tables(self) -> list[str]:
        """Include entries without glob characters: tables managed even before the first catalog sync."""
        return [p for p in self.include if not is_glob(p) and self.selects(p)]

    def rules_for(self, identifier: str) -> list[TableRule]:
        """The per-table rules matching ``identifier``, in file order."""
        return [r for r in self.tables if glob_match(identifier, r.pattern)]


@dataclass(frozen=True)
class Defaults:
    """Settings for every managed table (per-table rules refine them)."""

    properties: Mapping[str, str] = field(default_factory=dict)
    maintenance: Mapping[str, timedelta | None] = field(
        default_factory=lambda: dict(DEFAULT_MAINTENANCE_INTERVALS)
    )
    schedule: ScheduleSpec = field(default_factory=lambda: ScheduleSpec(every=timedelta(hours=1)))
    watch_changes: bool = True
    paused_at_creation: bool = False
    change_poll_interval: timedelta = timedelta(seconds=60)
    retry_delay: timedelta = timedelta(seconds=30)
    task_retries: int = 1
    execute_timeout: timedelta | None = timedelta(hours=2)
    task_timeout: timedelta | None = timedelta(hours=1)
    run_timeout: timedelta | None = timedelta(hours=6)
    failure_backoff: timedelta = timedelta(minutes=5)
    failure_backoff_max: timedelta = timedelta(hours=6)


@dataclass(frozen=True)
class CatalogSyncConfig:
    """The ``amoro__catalog_sync`` DAG: discovery and the per-table cost cache."""

    schedule: ScheduleSpec = field(default_factory=lambda: ScheduleSpec(every=timedelta(minutes=10)))
    evaluate: bool = True
    paused_at_creation: bool = False
    parallelism: int = 4
    time_budget: timedelta | None = timedelta(minutes=5)


@dataclass(frozen=True)
class TableSettings:
    """Everything the builder needs for one table's DAG, resolved from configuration and cache.

    Attributes:
        conn_id: the catalog connection id.
        identifier: ``namespace.table``.
        dag_id: ``amoro__<conn>__<namespace>__<table>``.
        group: the table's optimizer group.
        quota: ``self-optimizing.quota`` in effect.
        max_active_tasks: cap on concurrently running execute tasks (quota applied to the group).
        execute_retries: ``self-optimizing.execute.num-retries`` in effect.
        property_overrides: properties the engine applies over the table's own properties.
        maintenance: the maintenance actions to generate, with their minimum interval: every
            action whose interval is not ``off`` in the configuration, whatever the table's
            properties (an action the table switches off skips itself at run time, so the DAG's task
            set never depends on properties).
        schedule: the fallback time schedule.
        watch_changes: whether commits by others (an AssetWatcher) trigger the DAG.
        priority_weight: the tasks' priority weight (absolute): ``priority_weight`` of the last
            matching table rule, else 1. It does not follow the cached cost: anything that changes
            with the data must stay out of the serialized DAG, or every catalog sync writes a new
            DAG version of every table.
        cost: the cached cost in bytes, or None when not known yet (informative; not in the DAG).
        property_defaults: ``defaults.properties``: applied at run time under the table's own
            properties (the table's value wins).
        paused_at_creation: whether the DAG starts paused (Airflow's ``is_paused_upon_creation``).
        renamed_from: the table's former name when the catalog sync saw it renamed (its runtime
            state is adopted by the evaluate task).
    """

    conn_id: str
    identifier: str
    dag_id: str
    group: OptimizerGroup
    quota: float
    max_active_tasks: int
    execute_retries: int
    property_overrides: Mapping[str, str]
    maintenance: Mapping[str, timedelta]
    schedule: ScheduleSpec
    watch_changes: bool
    priority_weight: int
    cost: int | None = None
    property_defaults: Mapping[str, str] = field(default_factory=dict)
    paused_at_creation: bool = False
    renamed_from: str | None = None

    @property
    def namespace(self) -> str:
        """The namespace (dotted when nested)."""
        return self.identifier.rpartition(".")[0]

    @property
    def table_name(self) -> str:
        """The table's own name."""
        return self.identifier.rpartition(".")[2]


@dataclass(frozen=True)
class FactoryConfig:
    """The validated DAG factory configuration (see ``docs/dag_factory.md``).

    Attributes:
        catalogs: managed catalogs by connection id.
        optimizer_groups: optimizer groups by name.
        defaults: settings for every table.
        catalog_sync: the discovery DAG's settings.
        cache_dir: where the catalog sync writes the table list: a local path, or a URL (fsspec:
            ``s3://…``, ``gs://…``) that every host parsing the DAG file can read.
        source: the file the configuration came from (for messages), or None.
        shards: how many DAG files share the tables (each file builds the tables whose DAG id
            hashes to its shard index, so each stays well within the DAG processor's timeout).
        deployment: this Airflow deployment's name; when set, a table is optimized and maintained
            only while this deployment holds its lease (a table property, see
            :mod:`airflow_provider_amoro.lease`), so two deployments on one catalog never both work
            on a table. None: no lease.
    """

    catalogs: Mapping[str, CatalogConfig]
    optimizer_groups: Mapping[str, OptimizerGroup]
    defaults: Defaults = field(default_factory=Defaults)
    catalog_sync: CatalogSyncConfig = field(default_factory=CatalogSyncConfig)
    cache_dir: Path | str = field(default_factory=lambda: default_cache_dir())
    source: str | None = None
    shards: int = 1
    deployment: str | None = None

    def resolve(
        self,
        conn_id: str,
        identifier: str,
        *,
        table_properties: Mapping[str, str] | None = None,
        cost: int | None = None,
    ) -> TableSettings:
        """Resolve the settings of one table.

        Args:
            conn_id: the catalog connection id (a key of ``catalogs``).
            identifier: ``namespace.table``.
            table_properties: the table's own properties as last seen by the catalog sync.
            cost: the cached cost in bytes.

        Raises:
            ConfigError: the table's group is not a configured optimizer group, or a combination of
                settings is invalid.
        """
        catalog = self.catalogs[conn_id]
        table_props = dict(table_properties or {})
        overrides: dict[str, str] = {}
        maintenance: dict[str, timedelta | None] = dict(self.defaults.maintenance)
        schedule = self.defaults.schedule
        watch = self.defaults.watch_changes
        paused = self.defaults.paused_at_creation
        weight = 1
        if catalog.paused_at_creation is not None:
            paused = catalog.paused_at_creation
        rule_path: list[str | int] = ["defaults", "properties"]
        for rule in catalog.rules_for(identifier):
            overrides.update(rule.properties)
            maintenance.update(rule.maintenance)
            if rule.schedule is not None:
                schedule = rule.schedule
            if rule.watch_changes is not None:
                watch = rule.watch_changes
            if rule.paused_at_creation is not None:
                paused = rule.paused_at_creation
            if rule.priority_weight is not None:
                weight = rule.priority_weight
            rule_path = ["catalogs", conn_id, "tables", rule.pattern, "properties"]
        effective = {**self.defaults.properties, **table_props, **overrides}
        group_name = effective.get(GROUP, GROUP_DEFAULT)
        group = self.optimizer_groups.get(group_name)
        if group is None:
            where: list[str | int]
            if GROUP in overrides:
                where = rule_path
            elif GROUP in table_props:
                where = ["catalogs", conn_id, f"{identifier} (table property {GROUP})"]
            else:
                where = ["defaults", "properties"]
            raise ConfigError(
                where,
                f"optimizer group {group_name!r} of table {conn_id}.{identifier} is not defined under "
                f"optimizer_groups (defined: {', '.join(sorted(self.optimizer_groups)) or 'none'})",
                source=self.source,
            )
        quota = _float_prop(effective, QUOTA, QUOTA_DEFAULT)
        retries = int(_float_prop(effective, EXECUTE_NUM_RETRIES, EXECUTE_NUM_RETRIES_DEFAULT))
        actions: dict[str, timedelta] = {}
        for spec in MAINTENANCE_ACTIONS:
            interval = maintenance.get(spec.name)
            if interval is not None:
                actions[spec.name] = interval
        return TableSettings(
            conn_id=conn_id,
            identifier=identifier,
            dag_id=table_dag_id(conn_id, identifier),
            group=group,
            quota=quota,
            max_active_tasks=quota_to_tasks(quota, group.slots),
            execute_retries=max(0, retries),
            property_overrides=overrides,
            maintenance=actions,
            schedule=schedule,
            watch_changes=watch,
            priority_weight=weight,
            cost=cost,
            property_defaults=dict(self.defaults.properties),
            paused_at_creation=paused,
        )


def maintenance_disabled_reason(action: str, properties: Mapping[str, str]) -> str | None:
    """Why ``action`` is off for a table with these effective properties, or None when it is on.

    Amoro's switches: ``table-expire.enabled`` (default on), ``clean-dangling-delete-files.enabled``
    (on), ``clean-orphan-file.enabled`` (off), ``data-expire.enabled`` (off),
    ``tag.auto-create.enabled`` (off); ``gc.enabled=false`` turns off all but ``create_tags``.
    Checked at run time by the generated DAG's maintenance tasks (they skip), never at parse time.
    """
    spec = MAINTENANCE_ACTIONS_BY_NAME[action]
    prop = spec.enabled_property
    if spec.gc_controlled and properties.get(GC_ENABLED, "true").strip().lower() == "false":
        return f"{GC_ENABLED} is false"
    value = properties.get(prop, "true" if spec.enabled_default else "false").strip().lower()
    if value != "true":
        return f"{prop} is {value}" + ("" if prop in properties else " (default)")
    return None


def _float_prop(props: Mapping[str, str], name: str, default: float) -> float:
    raw = props.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if math.isfinite(value) else default


def quota_to_tasks(quota: float, slots: int) -> int:
    """Amoro's quota as a cap on concurrent execute tasks.

    ``quota > 1`` is a number of threads (``int(quota)``); ``quota <= 1`` is a share of the group's
    slots, rounded up, at least 1 and at most the slots.
    """
    if quota > 1:
        return max(1, int(quota))
    return max(1, min(slots, math.ceil(quota * slots - 1e-9)))


_MIB = 1024 * 1024
MAX_PRIORITY_WEIGHT = 1_000_000


def priority_weight(cost: int | None) -> int:
    """Priority weight from a cost in bytes: ``1 + cost // 1 MiB`` (capped); 1 when unknown."""
    if cost is None or cost <= 0:
        return 1
    return min(MAX_PRIORITY_WEIGHT, 1 + cost // _MIB)


def default_cache_dir() -> Path | str:
    """``$AMORO_CACHE_DIR`` (a path or URL), else ``$AIRFLOW_HOME/amoro/cache`` (``~/airflow/amoro/cache``).

    The local default suits only a single machine: with workers on other hosts, set ``cache_dir``
    (or ``$AMORO_CACHE_DIR``) to object storage or a shared path.
    """
    env = os.environ.get(CACHE_DIR_ENV_VAR)
    if env:
        return env.rstrip("/") if "://" in env else Path(env).expanduser()
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return Path(home).expanduser() / "amoro" / "cache"


# --------------------------------------------------------------------------------------------------
# loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects duplicate keys instead of silently keeping the last."""


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen[key] = loader.construct_object(value_node, deep=deep)
    return seen


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_TOP_KEYS = (
    "version",
    "cache_dir",
    "catalogs",
    "optimizer_groups",
    "defaults",
    "catalog_sync",
    "shards",
    "deployment",
)
_CATALOG_KEYS = ("include", "exclude", "tables", "paused_at_creation")
_GROUP_KEYS = ("slots", "pool", "queue", "description", "executor", "executor_config", "max_input_bytes")
_DEFAULT_KEYS = (
    "properties",
    "maintenance",
    "schedule",
    "watch_changes",
    "paused_at_creation",
    "change_poll_interval",
    "retry_delay",
    "task_retries",
    "execute_timeout",
    "task_timeout",
    "run_timeout",
    "failure_backoff",
    "failure_backoff_max",
)
_RULE_KEYS = (
    "properties",
    "maintenance",
    "schedule",
    "watch_changes",
    "paused_at_creation",
    "priority_weight",
)
_SYNC_KEYS = ("schedule", "evaluate", "paused_at_creation", "parallelism", "time_budget")
_POOL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def parse_config(data: Any, *, source: str | None = None) -> FactoryConfig:
    """Validate an already-parsed YAML document and build the configuration.

    Args:
        data: the YAML document (a mapping).
        source: file name used in error messages.

    Raises:
        ConfigError: the first problem found, with its key path.
    """
    try:
        return _parse(data, source)
    except ConfigError as exc:
        raise exc.with_source(source) if source and exc.source is None else exc from None


def _parse(data: Any, source: str | None) -> FactoryConfig:
    root = _expect_mapping(data, [], allow_none=False)
    _check_keys(root, [], _TOP_KEYS)
    version = root.get("version", 1)
    if version != 1:
        raise ConfigError(["version"], f"unsupported version {describe(version)}; expected 1")
    groups = _parse_groups(root.get("optimizer_groups"))
    defaults = _parse_defaults(root.get("defaults"))
    catalogs = _parse_catalogs(root.get("catalogs"))
    sync = _parse_sync(root.get("catalog_sync"))
    cache_dir = _parse_cache_dir(root.get("cache_dir"), source)
    return FactoryConfig(
        catalogs=catalogs,
        optimizer_groups=groups,
        defaults=defaults,
        catalog_sync=sync,
        cache_dir=cache_dir,
        source=source,
        shards=_positive_int(root.get("shards", 1), ["shards"]),
        deployment=None if root.get("deployment") is None else _name(root["deployment"], ["deployment"]),
    )


def _parse_groups(raw_groups: Any) -> dict[str, OptimizerGroup]:
    groups_raw = _expect_mapping(raw_groups, ["optimizer_groups"])
    groups: dict[str, OptimizerGroup] = {}
    pools: dict[str, str] = {}
    for name, raw in groups_raw.items():
        path: list[str | int] = ["optimizer_groups", name]
        spec = _expect_mapping(raw, path, allow_none=False)
        _check_keys(spec, path, _GROUP_KEYS)
        if "slots" not in spec:
            raise ConfigError([*path, "slots"], "missing; expected a positive integer (the pool's slots)")
        slots = _positive_int(spec["slots"], [*path, "slots"])
        pool = _name(spec.get("pool", f"amoro_optimizer_{name}"), [*path, "pool"])
        if not _POOL_NAME.match(pool):
            raise ConfigError(
                [*path, "pool"], f"pool names allow letters, digits, '_', '.', '-'; got {pool!r}"
            )
        if pool in pools:
            raise ConfigError([*path, "pool"], f"pool {pool!r} is already used by group {pools[pool]!r}")
        pools[pool] = name
        queue = spec.get("queue")
        executor = spec.get("executor")
        groups[name] = OptimizerGroup(
            name=name,
            pool=pool,
            slots=slots,
            queue=None if queue is None else _name(queue, [*path, "queue"]),
            description=str(spec.get("description") or f"Amoro optimizer group {name!r}"),
            executor=None if executor is None else _name(executor, [*path, "executor"]),
            executor_config=dict(_expect_mapping(spec.get("executor_config"), [*path, "executor_config"])),
            max_input_bytes=_positive_int(spec["max_input_bytes"], [*path, "max_input_bytes"])
            if spec.get("max_input_bytes") is not None
            else None,
        )
    if not groups:
        raise ConfigError(["optimizer_groups"], "define at least one optimizer group (usually 'default')")
    return groups


def _parse_catalogs(raw_catalogs: Any) -> dict[str, CatalogConfig]:
    catalogs_raw = _expect_mapping(raw_catalogs, ["catalogs"])
    if not catalogs_raw:
        raise ConfigError(["catalogs"], "define at least one catalog (an Airflow connection id)")
    catalogs: dict[str, CatalogConfig] = {}
    for conn_id, raw in catalogs_raw.items():
        path = ["catalogs", conn_id]
        if not re.match(r"^[A-Za-z0-9_-]+$", conn_id):
            raise ConfigError(path, "connection ids may hold letters, digits, '_' and '-' only")
        spec = _expect_mapping(raw, path)
        _check_keys(spec, path, _CATALOG_KEYS)
        rules_raw = _expect_mapping(spec.get("tables"), [*path, "tables"])
        rules = []
        for pattern, rule_raw in rules_raw.items():
            rpath: list[str | int] = [*path, "tables", pattern]
            if "." not in pattern:
                raise ConfigError(rpath, "expected '<namespace>.<table>' (globs allowed) as the key")
            rspec = _expect_mapping(rule_raw, rpath)
            _check_keys(rspec, rpath, _RULE_KEYS)
            rules.append(
                TableRule(
                    pattern=pattern,
                    properties=parse_properties(rspec.get("properties"), [*rpath, "properties"]),
                    maintenance=parse_maintenance(rspec.get("maintenance"), [*rpath, "maintenance"]),
                    schedule=parse_schedule(rspec["schedule"], [*rpath, "schedule"])
                    if "schedule" in rspec
                    else None,
                    watch_changes=_bool(rspec["watch_changes"], [*rpath, "watch_changes"])
                    if "watch_changes" in rspec
                    else None,
                    paused_at_creation=_bool(rspec["paused_at_creation"], [*rpath, "paused_at_creation"])
                    if "paused_at_creation" in rspec
                    else None,
                    priority_weight=_positive_int(rspec["priority_weight"], [*rpath, "priority_weight"])
                    if "priority_weight" in rspec
                    else None,
                )
            )
        catalogs[conn_id] = CatalogConfig(
            conn_id=conn_id,
            include=_globs(spec.get("include"), [*path, "include"], default=("*",)),
            exclude=_globs(spec.get("exclude"), [*path, "exclude"], default=()),
            tables=tuple(rules),
            paused_at_creation=_bool(spec["paused_at_creation"], [*path, "paused_at_creation"])
            if "paused_at_creation" in spec
            else None,
        )
    return catalogs


def _parse_sync(raw_sync: Any) -> CatalogSyncConfig:
    sync_raw = _expect_mapping(raw_sync, ["catalog_sync"])
    _check_keys(sync_raw, ["catalog_sync"], _SYNC_KEYS)
    sync = CatalogSyncConfig(
        schedule=parse_schedule(sync_raw["schedule"], ["catalog_sync", "schedule"])
        if "schedule" in sync_raw
        else CatalogSyncConfig().schedule,
        evaluate=_bool(sync_raw.get("evaluate", True), ["catalog_sync", "evaluate"]),
        paused_at_creation=_bool(
            sync_raw.get("paused_at_creation", False), ["catalog_sync", "paused_at_creation"]
        ),
        parallelism=_positive_int(sync_raw.get("parallelism", 4), ["catalog_sync", "parallelism"]),
        time_budget=parse_duration(
            sync_raw.get("time_budget", "5min"), ["catalog_sync", "time_budget"], allow_off=True
        ),
    )
    return sync


def _parse_cache_dir(cache_raw: Any, source: str | None) -> Path | str:
    cache_dir: Path | str
    if cache_raw is None:
        cache_dir = default_cache_dir()
    else:
        text = os.path.expandvars(_name(cache_raw, ["cache_dir"]))
        if "://" in text:
            scheme = text.split("://", 1)[0]
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
                raise ConfigError(
                    ["cache_dir"], f"expected a path or a URL such as s3://bucket/amoro, got {text!r}"
                )
            cache_dir = text.rstrip("/")
        else:
            cache_dir = Path(text).expanduser()
            if not cache_dir.is_absolute() and source:
                cache_dir = Path(source).parent / cache_dir
    return cache_dir


def _parse_defaults(raw: Any) -> Defaults:
    path: list[str | int] = ["defaults"]
    spec = _expect_mapping(raw, path)
    _check_keys(spec, path, _DEFAULT_KEYS)
    base = Defaults()
    maintenance = dict(base.maintenance)
    maintenance.update(parse_maintenance(spec.get("maintenance"), [*path, "maintenance"]))

    def optional(key: str, default: timedelta | None) -> timedelta | None:
        return parse_duration(spec[key], [*path, key], allow_off=True) if key in spec else default

    def required(key: str, default: timedelta) -> timedelta:
        return parse_duration(spec.get(key, default.total_seconds()), [*path, key]) or default

    execute_timeout = optional("execute_timeout", base.execute_timeout)
    run_timeout = optional("run_timeout", base.run_timeout)
    if run_timeout is not None and execute_timeout is not None and run_timeout <= execute_timeout:
        raise ConfigError(
            [*path, "run_timeout"],
            f"must be longer than execute_timeout ({execute_timeout}), "
            f"got {describe(spec.get('run_timeout'))}",
        )
    backoff = required("failure_backoff", base.failure_backoff)
    backoff_max = required("failure_backoff_max", base.failure_backoff_max)
    if backoff_max < backoff:
        raise ConfigError(
            [*path, "failure_backoff_max"],
            f"must be at least failure_backoff ({backoff}), got {describe(spec.get('failure_backoff_max'))}",
        )
    return Defaults(
        properties=parse_properties(spec.get("properties"), [*path, "properties"]),
        maintenance=maintenance,
        schedule=parse_schedule(spec["schedule"], [*path, "schedule"])
        if "schedule" in spec
        else base.schedule,
        watch_changes=_bool(spec.get("watch_changes", True), [*path, "watch_changes"]),
        paused_at_creation=_bool(spec.get("paused_at_creation", False), [*path, "paused_at_creation"]),
        change_poll_interval=required("change_poll_interval", base.change_poll_interval),
        retry_delay=required("retry_delay", base.retry_delay),
        task_retries=_non_negative_int(spec.get("task_retries", base.task_retries), [*path, "task_retries"]),
        execute_timeout=execute_timeout,
        task_timeout=optional("task_timeout", base.task_timeout),
        run_timeout=run_timeout,
        failure_backoff=backoff,
        failure_backoff_max=backoff_max,
    )


def load_config(path: str | os.PathLike[str] | None = None) -> FactoryConfig:
    """Load and validate the DAG factory configuration.

    Args:
        path: the YAML file; when None, ``$AMORO_DAGS_CONFIG`` is used.

    Raises:
        ConfigError: no path given, the file is missing or not valid YAML, or a value is invalid.
    """
    if path is None:
        env = os.environ.get(CONFIG_ENV_VAR)
        if not env:
            raise ConfigError([], f"no configuration file given and {CONFIG_ENV_VAR} is not set")
        path = env
    file = Path(path).expanduser()
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [], f"configuration file not found (set {CONFIG_ENV_VAR} to its path)", source=source
        ) from None
    except OSError as exc:
        raise ConfigError([], f"cannot read the configuration file: {exc}", source=source) from None
    return loads(text, source=source)


def loads(text: str, *, source: str | None = None) -> FactoryConfig:
    """Parse and validate configuration YAML given as text.

    Raises:
        ConfigError: invalid YAML (with line and column) or invalid values.
    """
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([], f"invalid YAML{where}: {problem}", source=source) from None
    return parse_config(data, source=source)
