"""Self-optimizing configuration read from Iceberg table properties, with Apache Amoro's names and defaults.

Every ``self-optimizing.*`` property of Amoro's ``TableProperties`` that this provider honours is a
module constant with its default beside it, so users keep the properties they set under Amoro::

    from airflow_provider_amoro.optimizing.config import OptimizingConfig

    config = OptimizingConfig.from_table(table)
    config.fragment_size  # target-size / fragment-ratio

A property with a bad value raises :class:`InvalidPropertyError` naming the property and the value;
a table is never optimized with a half-understood configuration.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

from airflow_provider_amoro.properties import (
    ALLOW_PARTIAL_COMMIT,
    ALLOW_PARTIAL_COMMIT_DEFAULT,
    ENABLED,
    ENABLED_DEFAULT,
    EXECUTE_NUM_RETRIES,
    EXECUTE_NUM_RETRIES_DEFAULT,
    FILTER,
    FILTER_DEFAULT,
    FRAGMENT_RATIO,
    FRAGMENT_RATIO_DEFAULT,
    FULL_REWRITE_ALL_FILES,
    FULL_REWRITE_ALL_FILES_DEFAULT,
    FULL_TRIGGER_INTERVAL,
    FULL_TRIGGER_INTERVAL_DEFAULT,
    GROUP,
    GROUP_DEFAULT,
    MAJOR_TRIGGER_DUPLICATE_RATIO,
    MAJOR_TRIGGER_DUPLICATE_RATIO_DEFAULT,
    MAX_FILE_COUNT,
    MAX_FILE_COUNT_DEFAULT,
    MAX_TASK_SIZE,
    MAX_TASK_SIZE_DEFAULT,
    MIN_PLAN_INTERVAL,
    MIN_PLAN_INTERVAL_DEFAULT,
    MIN_TARGET_SIZE_RATIO,
    MIN_TARGET_SIZE_RATIO_DEFAULT,
    MINOR_TRIGGER_FILE_COUNT,
    MINOR_TRIGGER_FILE_COUNT_DEFAULT,
    MINOR_TRIGGER_INTERVAL,
    MINOR_TRIGGER_INTERVAL_DEFAULT,
    OPTIMIZING_PROPERTY_NAMES,
    QUOTA,
    QUOTA_DEFAULT,
    TARGET_SIZE,
    TARGET_SIZE_DEFAULT,
)

#: Every property name this module reads, in documentation order.
PROPERTY_NAMES = OPTIMIZING_PROPERTY_NAMES


class InvalidPropertyError(ValueError):
    """A ``self-optimizing.*`` table property has a value that cannot be used.

    Attributes:
        name: the property name.
        value: the raw value found in the table properties.
    """

    def __init__(self, name: str, value: Any, reason: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"invalid table property {name}={value!r}: {reason}")


_T = TypeVar("_T")


def _parse_bool(name: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text == "true":
        return True
    if text == "false":
        return False
    raise InvalidPropertyError(name, raw, "expected true or false")


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise InvalidPropertyError(name, raw, "expected an integer") from None


MAX_DURATION_MS = 36500 * 86_400_000
"""The longest duration a property may give (100 years, in milliseconds); longer ones are a mistake
that would overflow date arithmetic later."""


def _parse_interval_ms(name: str, raw: str) -> int:
    value = _parse_int(name, raw)
    if abs(value) > MAX_DURATION_MS:
        raise InvalidPropertyError(name, raw, f"too long: at most {MAX_DURATION_MS} ms (100 years)")
    return value


def _parse_float(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise InvalidPropertyError(name, raw, "expected a number") from None
    if not math.isfinite(value):
        raise InvalidPropertyError(name, raw, "expected a finite number")
    return value


def _get(props: Mapping[str, str], name: str, parse: Callable[[str, str], _T], default: _T) -> _T:
    raw = props.get(name)
    if raw is None:
        return default
    return parse(name, str(raw))


def _check(cond: bool, name: str, props: Mapping[str, str], reason: str) -> None:
    if not cond:
        raise InvalidPropertyError(name, props.get(name), reason)


@dataclass(frozen=True)
class OptimizingConfig:
    """The effective self-optimizing configuration of one table.

    Attributes:
        enabled: ``self-optimizing.enabled``; False turns self-optimizing off for the table.
        group: ``self-optimizing.group``, the optimizer group (an Airflow pool here).
        quota: ``self-optimizing.quota``; > 1 means threads, <= 1 a share of the group's threads.
        execute_num_retries: ``self-optimizing.execute.num-retries``.
        target_size: ``self-optimizing.target-size`` in bytes.
        max_task_size_bytes: ``self-optimizing.max-task-size-bytes``.
        fragment_ratio: ``self-optimizing.fragment-ratio``.
        min_target_size_ratio: ``self-optimizing.min-target-size-ratio``.
        minor_trigger_file_count: ``self-optimizing.minor.trigger.file-count``.
        minor_trigger_interval_ms: ``self-optimizing.minor.trigger.interval``; negative: never by interval.
        major_duplicate_ratio: ``self-optimizing.major.trigger.duplicate-ratio``.
        full_trigger_interval_ms: ``self-optimizing.full.trigger.interval``; negative: never.
        full_rewrite_all_files: ``self-optimizing.full.rewrite-all-files``.
        allow_partial_commit: ``self-optimizing.allow-partial-commit``.
        filter: ``self-optimizing.filter``, a SQL-like predicate (pyiceberg expression syntax), or None.
        min_plan_interval_ms: ``self-optimizing.min-plan-interval``: the least time between two
            plans of the table (the plan task skips until it has passed).
        max_file_count: ``self-optimizing.max-file-count``: at most this many input files (data
            and delete files) in one optimizing process; the rest waits for the next one.
    """

    enabled: bool = ENABLED_DEFAULT
    group: str = GROUP_DEFAULT
    quota: float = QUOTA_DEFAULT
    execute_num_retries: int = EXECUTE_NUM_RETRIES_DEFAULT
    target_size: int = TARGET_SIZE_DEFAULT
    max_task_size_bytes: int = MAX_TASK_SIZE_DEFAULT
    fragment_ratio: float = FRAGMENT_RATIO_DEFAULT
    min_target_size_ratio: float = MIN_TARGET_SIZE_RATIO_DEFAULT
    minor_trigger_file_count: int = MINOR_TRIGGER_FILE_COUNT_DEFAULT
    minor_trigger_interval_ms: int = MINOR_TRIGGER_INTERVAL_DEFAULT
    major_duplicate_ratio: float = MAJOR_TRIGGER_DUPLICATE_RATIO_DEFAULT
    full_trigger_interval_ms: int = FULL_TRIGGER_INTERVAL_DEFAULT
    full_rewrite_all_files: bool = FULL_REWRITE_ALL_FILES_DEFAULT
    allow_partial_commit: bool = ALLOW_PARTIAL_COMMIT_DEFAULT
    filter: str | None = FILTER_DEFAULT
    min_plan_interval_ms: int = MIN_PLAN_INTERVAL_DEFAULT
    max_file_count: int = MAX_FILE_COUNT_DEFAULT

    def __post_init__(self) -> None:
        """Validate the values (also when the dataclass is built directly)."""
        props = self.to_properties()
        _check(self.quota > 0, QUOTA, props, "must be > 0")
        _check(self.execute_num_retries >= 0, EXECUTE_NUM_RETRIES, props, "must be >= 0")
        _check(self.max_file_count >= 1, MAX_FILE_COUNT, props, "must be >= 1")
        _check(self.target_size > 0, TARGET_SIZE, props, "must be a positive size in bytes")
        _check(self.max_task_size_bytes > 0, MAX_TASK_SIZE, props, "must be a positive size in bytes")
        _check(self.fragment_ratio > 0, FRAGMENT_RATIO, props, "must be > 0")
        _check(self.min_target_size_ratio > 0, MIN_TARGET_SIZE_RATIO, props, "must be > 0")
        _check(self.minor_trigger_file_count > 0, MINOR_TRIGGER_FILE_COUNT, props, "must be > 0")
        _check(self.major_duplicate_ratio > 0, MAJOR_TRIGGER_DUPLICATE_RATIO, props, "must be > 0")
        _check(self.min_plan_interval_ms >= 0, MIN_PLAN_INTERVAL, props, "must be >= 0")
        _check(bool(self.group.strip()), GROUP, props, "must not be empty")
        if self.filter is not None:
            self.filter_expression  # noqa: B018 - parses, raising InvalidPropertyError

    @classmethod
    def from_properties(cls, properties: Mapping[str, str], schema: Schema | None = None) -> OptimizingConfig:
        """Read the configuration from table properties; unset properties take Amoro's defaults.

        Args:
            properties: table properties (other properties are ignored).
            schema: when given, ``self-optimizing.filter`` is also bound to it, so a filter naming an
                unknown column is rejected here.

        Returns:
            The validated configuration.

        Raises:
            InvalidPropertyError: a property is not a number/boolean as required, out of range, or the
                filter does not parse or bind.
        """
        p = properties
        raw_filter = p.get(FILTER)
        config = cls(
            enabled=_get(p, ENABLED, _parse_bool, ENABLED_DEFAULT),
            group=str(p.get(GROUP, GROUP_DEFAULT)),
            quota=_get(p, QUOTA, _parse_float, float(QUOTA_DEFAULT)),
            execute_num_retries=_get(p, EXECUTE_NUM_RETRIES, _parse_int, EXECUTE_NUM_RETRIES_DEFAULT),
            target_size=_get(p, TARGET_SIZE, _parse_int, TARGET_SIZE_DEFAULT),
            max_task_size_bytes=_get(p, MAX_TASK_SIZE, _parse_int, MAX_TASK_SIZE_DEFAULT),
            fragment_ratio=_get(p, FRAGMENT_RATIO, _parse_float, float(FRAGMENT_RATIO_DEFAULT)),
            min_target_size_ratio=_get(p, MIN_TARGET_SIZE_RATIO, _parse_float, MIN_TARGET_SIZE_RATIO_DEFAULT),
            minor_trigger_file_count=_get(
                p, MINOR_TRIGGER_FILE_COUNT, _parse_int, MINOR_TRIGGER_FILE_COUNT_DEFAULT
            ),
            minor_trigger_interval_ms=_get(
                p, MINOR_TRIGGER_INTERVAL, _parse_interval_ms, MINOR_TRIGGER_INTERVAL_DEFAULT
            ),
            major_duplicate_ratio=_get(
                p, MAJOR_TRIGGER_DUPLICATE_RATIO, _parse_float, MAJOR_TRIGGER_DUPLICATE_RATIO_DEFAULT
            ),
            full_trigger_interval_ms=_get(
                p, FULL_TRIGGER_INTERVAL, _parse_interval_ms, FULL_TRIGGER_INTERVAL_DEFAULT
            ),
            full_rewrite_all_files=_get(
                p, FULL_REWRITE_ALL_FILES, _parse_bool, FULL_REWRITE_ALL_FILES_DEFAULT
            ),
            allow_partial_commit=_get(p, ALLOW_PARTIAL_COMMIT, _parse_bool, ALLOW_PARTIAL_COMMIT_DEFAULT),
            filter=raw_filter if raw_filter is not None and raw_filter.strip() else None,
            min_plan_interval_ms=_get(p, MIN_PLAN_INTERVAL, _parse_interval_ms, MIN_PLAN_INTERVAL_DEFAULT),
            max_file_count=_get(p, MAX_FILE_COUNT, _parse_int, MAX_FILE_COUNT_DEFAULT),
        )
        if schema is not None:
            config.bound_filter(schema)
        return config

    @classmethod
    def from_table(cls, table: Table) -> OptimizingConfig:
        """Read the configuration from a pyiceberg table's properties, binding the filter to its schema."""
        return cls.from_properties(table.properties, schema=table.schema())

    def replace(self, **changes: Any) -> OptimizingConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def fragment_size(self) -> int:
        """Files at most this size are fragments: ``target-size / fragment-ratio``."""
        return int(self.target_size / self.fragment_ratio)

    @property
    def min_target_size(self) -> int:
        """Files above this size are target-size segments: ``target-size * min-target-size-ratio``."""
        return int(self.target_size * self.min_target_size_ratio)

    @property
    def max_task_size(self) -> int:
        """Largest input of one task: ``max(target-size, max-task-size-bytes)``."""
        return max(self.target_size, self.max_task_size_bytes)

    @cached_property
    def filter_expression(self) -> BooleanExpression | None:
        """``self-optimizing.filter`` parsed into an unbound pyiceberg expression (None: no filter).

        Raises:
            InvalidPropertyError: the filter does not parse.
        """
        if self.filter is None:
            return None
        from pyiceberg.expressions.parser import parse

        try:
            return parse(self.filter)
        except Exception as exc:  # noqa: BLE001 - pyparsing raises several exception types
            loc = getattr(exc, "loc", None)
            where = f" at character {loc}" if isinstance(loc, int) else ""
            raise InvalidPropertyError(FILTER, self.filter, f"not a valid predicate{where}") from None

    def bound_filter(self, schema: Schema) -> BooleanExpression | None:
        """The filter bound to ``schema`` (None: no filter).

        Raises:
            InvalidPropertyError: the filter does not parse or names a column/type the schema lacks.
        """
        expr = self.filter_expression
        if expr is None:
            return None
        from pyiceberg.expressions.visitors import bind

        try:
            return bind(schema, expr, case_sensitive=False)
        except Exception as exc:  # noqa: BLE001 - binding raises ValueError/TypeError subclasses
            raise InvalidPropertyError(
                FILTER, self.filter, f"cannot bind to the table schema: {exc}"
            ) from None

    def to_properties(self) -> dict[str, str]:
        """The effective configuration as table properties (strings, Amoro names); the filter only if set."""
        out = {
            ENABLED: _fmt_bool(self.enabled),
            GROUP: self.group,
            QUOTA: _fmt_num(self.quota),
            EXECUTE_NUM_RETRIES: str(self.execute_num_retries),
            TARGET_SIZE: str(self.target_size),
            MAX_TASK_SIZE: str(self.max_task_size_bytes),
            FRAGMENT_RATIO: _fmt_num(self.fragment_ratio),
            MIN_TARGET_SIZE_RATIO: _fmt_num(self.min_target_size_ratio),
            MINOR_TRIGGER_FILE_COUNT: str(self.minor_trigger_file_count),
            MINOR_TRIGGER_INTERVAL: str(self.minor_trigger_interval_ms),
            MAJOR_TRIGGER_DUPLICATE_RATIO: _fmt_num(self.major_duplicate_ratio),
            FULL_TRIGGER_INTERVAL: str(self.full_trigger_interval_ms),
            FULL_REWRITE_ALL_FILES: _fmt_bool(self.full_rewrite_all_files),
            ALLOW_PARTIAL_COMMIT: _fmt_bool(self.allow_partial_commit),
            MIN_PLAN_INTERVAL: str(self.min_plan_interval_ms),
            MAX_FILE_COUNT: str(self.max_file_count),
        }
        if self.filter is not None:
            out[FILTER] = self.filter
        return out


def _fmt_bool(value: bool) -> str:
    return "true" if value else "false"


def _fmt_num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
