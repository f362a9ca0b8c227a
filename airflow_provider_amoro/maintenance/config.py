"""Maintenance properties read from Iceberg table properties, with Apache Amoro's names and defaults.

Each property is a module constant with its default beside it. Values are parsed strictly: a bad
value raises :class:`~airflow_provider_amoro.optimizing.config.InvalidPropertyError` naming the
property and the value, so no file is ever deleted under a half-understood configuration.

Durations (``snapshot.keep.duration``, ``data-expire.retention-time``) take a number and a unit:
``ms``, ``s``, ``min`` (or ``m``), ``h``, ``d`` (long forms such as ``minutes`` or ``days`` too);
a bare number means milliseconds, as in Amoro.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_amoro.optimizing.config import (
    MAX_DURATION_MS,
    InvalidPropertyError,
    _get,
    _parse_bool,
    _parse_int,
)

__all__ = ["InvalidPropertyError", "MaintenanceConfig", "parse_duration_ms"]

from airflow_provider_amoro.properties import (
    CLEAN_DANGLING_DELETE_FILES_ENABLED,
    CLEAN_DANGLING_DELETE_FILES_ENABLED_DEFAULT,
    CLEAN_ORPHAN_FILE_ENABLED,
    CLEAN_ORPHAN_FILE_ENABLED_DEFAULT,
    CLEAN_ORPHAN_FILE_MIN_EXISTING_TIME_MINUTES,
    CLEAN_ORPHAN_FILE_MIN_EXISTING_TIME_MINUTES_DEFAULT,
    DATA_EXPIRE_BASE_ON_RULE,
    DATA_EXPIRE_BASE_ON_RULE_DEFAULT,
    DATA_EXPIRE_DATETIME_NUMBER_FORMAT,
    DATA_EXPIRE_DATETIME_NUMBER_FORMAT_DEFAULT,
    DATA_EXPIRE_DATETIME_STRING_PATTERN,
    DATA_EXPIRE_DATETIME_STRING_PATTERN_DEFAULT,
    DATA_EXPIRE_ENABLED,
    DATA_EXPIRE_ENABLED_DEFAULT,
    DATA_EXPIRE_FIELD,
    DATA_EXPIRE_LEVEL,
    DATA_EXPIRE_LEVEL_DEFAULT,
    DATA_EXPIRE_RETENTION_TIME,
    GC_ENABLED,
    GC_ENABLED_DEFAULT,
    METADATA_DELETE_AFTER_COMMIT_ENABLED,
    METADATA_DELETE_AFTER_COMMIT_ENABLED_DEFAULT,
    SNAPSHOT_KEEP_DURATION,
    SNAPSHOT_KEEP_DURATION_DEFAULT,
    SNAPSHOT_KEEP_MIN_COUNT,
    SNAPSHOT_KEEP_MIN_COUNT_DEFAULT,
    TABLE_EXPIRE_ENABLED,
    TABLE_EXPIRE_ENABLED_DEFAULT,
    TAG_AUTO_CREATE_ENABLED,
    TAG_AUTO_CREATE_ENABLED_DEFAULT,
    TAG_AUTO_CREATE_MAX_AGE_MS,
    TAG_AUTO_CREATE_MAX_AGE_MS_DEFAULT,
    TAG_AUTO_CREATE_TAG_FORMAT,
    TAG_AUTO_CREATE_TAG_FORMAT_DEFAULTS,
    TAG_AUTO_CREATE_TRIGGER_MAX_DELAY_MINUTES,
    TAG_AUTO_CREATE_TRIGGER_MAX_DELAY_MINUTES_DEFAULT,
    TAG_AUTO_CREATE_TRIGGER_OFFSET_MINUTES,
    TAG_AUTO_CREATE_TRIGGER_OFFSET_MINUTES_DEFAULT,
    TAG_AUTO_CREATE_TRIGGER_PERIOD,
    TAG_AUTO_CREATE_TRIGGER_PERIOD_DEFAULT,
)

_UNITS_MS = {
    "ms": 1,
    "milli": 1,
    "millis": 1,
    "millisecond": 1,
    "milliseconds": 1,
    "s": 1000,
    "sec": 1000,
    "secs": 1000,
    "second": 1000,
    "seconds": 1000,
    "m": 60_000,
    "min": 60_000,
    "mins": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "days": 86_400_000,
}
_DURATION = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


def parse_duration_ms(name: str, raw: str) -> int:
    """Parse an Amoro duration such as ``720min``, ``12h``, ``1d``, ``30s``, ``500ms`` to milliseconds.

    Args:
        name: the property name (for the error message).
        raw: the raw property value; a bare number is milliseconds.

    Returns:
        The duration in milliseconds (>= 0).

    Raises:
        InvalidPropertyError: when the value is not a non-negative number with a known unit.
    """
    match = _DURATION.match(raw)
    if match is None:
        raise InvalidPropertyError(name, raw, "expected a duration like 720min, 12h, 1d, 30s or 500ms")
    unit = match.group(2).lower() or "ms"
    if unit not in _UNITS_MS:
        raise InvalidPropertyError(name, raw, f"unknown duration unit {match.group(2)!r} (ms, s, min, h, d)")
    value = int(match.group(1)) * _UNITS_MS[unit]
    if value > MAX_DURATION_MS:
        raise InvalidPropertyError(name, raw, "too long: at most 36500d (100 years)")
    return value


def _minutes(name: str, raw: str) -> int:
    value = _non_negative(name, raw)
    if value * 60_000 > MAX_DURATION_MS:
        raise InvalidPropertyError(
            name, raw, f"too long: at most {MAX_DURATION_MS // 60_000} minutes (100 years)"
        )
    return value


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip()
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise InvalidPropertyError(name, raw, f"expected one of {', '.join(choices)}")

    return parse


def _non_negative(name: str, raw: str) -> int:
    value = _parse_int(name, raw)
    if value < 0:
        raise InvalidPropertyError(name, raw, "expected a non-negative integer")
    return value


def _positive(name: str, raw: str) -> int:
    value = _parse_int(name, raw)
    if value < 1:
        raise InvalidPropertyError(name, raw, "expected a positive integer")
    return value


def _max_age(name: str, raw: str) -> int:
    value = _parse_int(name, raw)
    if value == 0 or value < -1:
        raise InvalidPropertyError(name, raw, "expected a positive number of milliseconds or -1 (no limit)")
    if value > MAX_DURATION_MS:
        raise InvalidPropertyError(name, raw, f"too long: at most {MAX_DURATION_MS} ms (100 years)")
    return value


def _text(name: str, raw: str) -> str:
    if not raw.strip():
        raise InvalidPropertyError(name, raw, "must not be empty")
    return raw


@dataclass(frozen=True)
class MaintenanceConfig:
    """The effective maintenance configuration of one table (Amoro's property names and defaults).

    Every field is parsed from the table properties by :meth:`from_properties`; see the module
    constants for the property names. ``data_expire_field`` and ``data_expire_retention_ms`` are
    None when not set (then data expiry cannot run even when enabled).
    """

    gc_enabled: bool = GC_ENABLED_DEFAULT
    table_expire_enabled: bool = TABLE_EXPIRE_ENABLED_DEFAULT
    snapshot_keep_duration_ms: int = 720 * 60_000
    snapshot_keep_min_count: int = SNAPSHOT_KEEP_MIN_COUNT_DEFAULT
    metadata_delete_after_commit: bool = METADATA_DELETE_AFTER_COMMIT_ENABLED_DEFAULT
    clean_orphan_file_enabled: bool = CLEAN_ORPHAN_FILE_ENABLED_DEFAULT
    orphan_min_existing_time_minutes: int = CLEAN_ORPHAN_FILE_MIN_EXISTING_TIME_MINUTES_DEFAULT
    clean_dangling_delete_files_enabled: bool = CLEAN_DANGLING_DELETE_FILES_ENABLED_DEFAULT
    data_expire_enabled: bool = DATA_EXPIRE_ENABLED_DEFAULT
    data_expire_level: str = DATA_EXPIRE_LEVEL_DEFAULT
    data_expire_field: str | None = None
    data_expire_retention_ms: int | None = None
    data_expire_datetime_string_pattern: str = DATA_EXPIRE_DATETIME_STRING_PATTERN_DEFAULT
    data_expire_datetime_number_format: str = DATA_EXPIRE_DATETIME_NUMBER_FORMAT_DEFAULT
    data_expire_base_on_rule: str = DATA_EXPIRE_BASE_ON_RULE_DEFAULT
    tag_auto_create_enabled: bool = TAG_AUTO_CREATE_ENABLED_DEFAULT
    tag_trigger_period: str = TAG_AUTO_CREATE_TRIGGER_PERIOD_DEFAULT
    tag_trigger_offset_minutes: int = TAG_AUTO_CREATE_TRIGGER_OFFSET_MINUTES_DEFAULT
    tag_trigger_max_delay_minutes: int = TAG_AUTO_CREATE_TRIGGER_MAX_DELAY_MINUTES_DEFAULT
    tag_max_age_ms: int = TAG_AUTO_CREATE_MAX_AGE_MS_DEFAULT
    tag_format: str = ""  # empty: Amoro's default for the period, see effective_tag_format

    @property
    def effective_tag_format(self) -> str:
        """``tag.auto-create.tag-format``, or Amoro's default for the trigger period when unset."""
        return self.tag_format or TAG_AUTO_CREATE_TAG_FORMAT_DEFAULTS[self.tag_trigger_period]

    @classmethod
    def for_table(cls, table: Any, overrides: Mapping[str, str] | None = None) -> MaintenanceConfig:
        """The configuration of a pyiceberg table, with ``overrides`` applied over its properties."""
        return cls.from_properties({**table.properties, **(overrides or {})})

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> MaintenanceConfig:
        """Parse the maintenance properties of a table.

        Args:
            props: the table properties.

        Returns:
            The effective configuration.

        Raises:
            InvalidPropertyError: naming the first property whose value cannot be used.
        """
        field = props.get(DATA_EXPIRE_FIELD)
        retention = props.get(DATA_EXPIRE_RETENTION_TIME)
        return cls(
            gc_enabled=_get(props, GC_ENABLED, _parse_bool, GC_ENABLED_DEFAULT),
            table_expire_enabled=_get(props, TABLE_EXPIRE_ENABLED, _parse_bool, TABLE_EXPIRE_ENABLED_DEFAULT),
            snapshot_keep_duration_ms=parse_duration_ms(
                SNAPSHOT_KEEP_DURATION, props.get(SNAPSHOT_KEEP_DURATION, SNAPSHOT_KEEP_DURATION_DEFAULT)
            ),
            snapshot_keep_min_count=_get(
                props, SNAPSHOT_KEEP_MIN_COUNT, _positive, SNAPSHOT_KEEP_MIN_COUNT_DEFAULT
            ),
            metadata_delete_after_commit=_get(
                props,
                METADATA_DELETE_AFTER_COMMIT_ENABLED,
                _parse_bool,
                METADATA_DELETE_AFTER_COMMIT_ENABLED_DEFAULT,
            ),
            clean_orphan_file_enabled=_get(
                props, CLEAN_ORPHAN_FILE_ENABLED, _parse_bool, CLEAN_ORPHAN_FILE_ENABLED_DEFAULT
            ),
            orphan_min_existing_time_minutes=_get(
                props,
                CLEAN_ORPHAN_FILE_MIN_EXISTING_TIME_MINUTES,
                _minutes,
                CLEAN_ORPHAN_FILE_MIN_EXISTING_TIME_MINUTES_DEFAULT,
            ),
            clean_dangling_delete_files_enabled=_get(
                props,
                CLEAN_DANGLING_DELETE_FILES_ENABLED,
                _parse_bool,
                CLEAN_DANGLING_DELETE_FILES_ENABLED_DEFAULT,
            ),
            data_expire_enabled=_get(props, DATA_EXPIRE_ENABLED, _parse_bool, DATA_EXPIRE_ENABLED_DEFAULT),
            data_expire_level=_get(
                props, DATA_EXPIRE_LEVEL, _choice("partition", "file"), DATA_EXPIRE_LEVEL_DEFAULT
            ),
            data_expire_field=_text(DATA_EXPIRE_FIELD, field).strip() if field is not None else None,
            data_expire_retention_ms=(
                parse_duration_ms(DATA_EXPIRE_RETENTION_TIME, retention) if retention is not None else None
            ),
            data_expire_datetime_string_pattern=_get(
                props,
                DATA_EXPIRE_DATETIME_STRING_PATTERN,
                _text,
                DATA_EXPIRE_DATETIME_STRING_PATTERN_DEFAULT,
            ),
            data_expire_datetime_number_format=_get(
                props,
                DATA_EXPIRE_DATETIME_NUMBER_FORMAT,
                _choice("TIMESTAMP_MS", "TIMESTAMP_S"),
                DATA_EXPIRE_DATETIME_NUMBER_FORMAT_DEFAULT,
            ),
            data_expire_base_on_rule=_get(
                props,
                DATA_EXPIRE_BASE_ON_RULE,
                _choice("LAST_COMMIT_TIME", "CURRENT_TIME"),
                DATA_EXPIRE_BASE_ON_RULE_DEFAULT,
            ),
            tag_auto_create_enabled=_get(
                props, TAG_AUTO_CREATE_ENABLED, _parse_bool, TAG_AUTO_CREATE_ENABLED_DEFAULT
            ),
            tag_trigger_period=_get(
                props,
                TAG_AUTO_CREATE_TRIGGER_PERIOD,
                _choice("hourly", "daily", "monthly"),
                TAG_AUTO_CREATE_TRIGGER_PERIOD_DEFAULT,
            ),
            tag_trigger_offset_minutes=_get(
                props,
                TAG_AUTO_CREATE_TRIGGER_OFFSET_MINUTES,
                _minutes,
                TAG_AUTO_CREATE_TRIGGER_OFFSET_MINUTES_DEFAULT,
            ),
            tag_trigger_max_delay_minutes=_get(
                props,
                TAG_AUTO_CREATE_TRIGGER_MAX_DELAY_MINUTES,
                _minutes,
                TAG_AUTO_CREATE_TRIGGER_MAX_DELAY_MINUTES_DEFAULT,
            ),
            tag_max_age_ms=_get(
                props, TAG_AUTO_CREATE_MAX_AGE_MS, _max_age, TAG_AUTO_CREATE_MAX_AGE_MS_DEFAULT
            ),
            tag_format=_get(props, TAG_AUTO_CREATE_TAG_FORMAT, _text, ""),
        )
