"""Auto tags (Amoro's ``tag.auto-create.*``): one tag per hour, day or month on the main branch.

For the latest trigger time at or before ``now`` (period boundary + ``trigger.offset.minutes``;
boundaries in UTC: the full hour, midnight, the first day of the month), the tag goes on the
first snapshot of the main branch committed at or after the trigger time, i.e. the table as it was
when the period closed. When that snapshot came more than ``trigger.max-delay.minutes`` after the
trigger time, no tag is made for the period (the state at the boundary is no longer known); a
max delay of 0 means no limit, as in Amoro. Only the main branch's history is searched (Amoro
searches every snapshot of the table, which can pick a snapshot of another branch).
When no snapshot has come yet, nothing is done; a later run tags it.

The tag is named after the period that closed (``tag-20240101`` for the day 2024-01-01, tagged
on the first snapshot at or after 2024-01-02 00:00 + offset), formatted with
``tag.auto-create.tag-format`` (a Java pattern, quoted text literal; unset, Amoro's default for the
period: ``'tag-'yyyyMMddHH`` hourly, ``'tag-'yyyyMMdd`` daily, ``'tag-'yyyyMM`` monthly).
``tag.auto-create.max-age-ms`` (> 0) becomes the tag's ``max-ref-age-ms``, so snapshot expiry
removes the tag when it is older.
An existing tag of that name is left as it is (the action is idempotent).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING

from airflow_provider_amoro.maintenance.config import MaintenanceConfig
from airflow_provider_amoro.maintenance.datefmt import format_java
from airflow_provider_amoro.maintenance.results import TagResult, to_epoch_ms
from airflow_provider_amoro.properties import TAG_AUTO_CREATE_TAG_FORMAT

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

__all__ = ["create_auto_tags", "period_bounds"]

logger = logging.getLogger(__name__)
_UTC = dt.timezone.utc


def _period_start(when: dt.datetime, period: str) -> dt.datetime:
    if period == "hourly":
        return when.replace(minute=0, second=0, microsecond=0)
    if period == "daily":
        return when.replace(hour=0, minute=0, second=0, microsecond=0)
    return when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _previous_period(start: dt.datetime, period: str) -> dt.datetime:
    if period == "hourly":
        return start - dt.timedelta(hours=1)
    if period == "daily":
        return start - dt.timedelta(days=1)
    return (start - dt.timedelta(days=1)).replace(day=1)


def period_bounds(now_ms: int, period: str, offset_minutes: int) -> tuple[dt.datetime, dt.datetime]:
    """The latest trigger time at or before ``now_ms`` and the start of the period it closes.

    Args:
        now_ms: the current time, epoch ms.
        period: ``hourly``, ``daily`` or ``monthly``.
        offset_minutes: minutes after the boundary at which the period is tagged.

    Returns:
        ``(trigger_time, closed_period_start)``, both UTC datetimes.
    """
    offset = dt.timedelta(minutes=offset_minutes)
    now = dt.datetime.fromtimestamp(now_ms / 1000, tz=_UTC)
    boundary = _period_start(now - offset, period)
    return boundary + offset, _previous_period(boundary, period)


def _first_at_or_after(table: Table, trigger_ms: int) -> Snapshot | None:
    """The oldest snapshot of the main branch's history committed at or after ``trigger_ms``."""
    found: Snapshot | None = None
    snapshot = table.current_snapshot()
    while snapshot is not None and snapshot.timestamp_ms >= trigger_ms:
        found = snapshot
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return found


def create_auto_tags(
    table: Table,
    *,
    now: dt.datetime | int | None = None,
    log: logging.Logger | None = None,
    properties: Mapping[str, str] | None = None,
) -> TagResult:
    """Create the tag of the period that closed last, if it is due and missing.

    Args:
        table: the pyiceberg table (refreshed in place).
        now: the current time (datetime, naive = UTC, or epoch ms); the clock when None.
        log: logger.
        properties: property overrides applied over the table's own properties (e.g. from the DAG
            factory's configuration).

    Returns:
        A :class:`TagResult`; ``skipped`` when ``tag.auto-create.enabled`` is false.

    Raises:
        InvalidPropertyError: on a bad ``tag.auto-create.*`` value.
    """
    log = log or logger
    started = time.monotonic()
    result = TagResult(table=".".join(table.name()))
    config = MaintenanceConfig.for_table(table, properties)
    if not config.tag_auto_create_enabled:
        return result.skip("tag.auto-create.enabled=false")
    trigger, closed = period_bounds(
        to_epoch_ms(now), config.tag_trigger_period, config.tag_trigger_offset_minutes
    )
    result.tag_name = format_java(closed, TAG_AUTO_CREATE_TAG_FORMAT, config.effective_tag_format)
    table.refresh()
    if result.tag_name in table.metadata.refs:
        result.snapshot_id = table.metadata.refs[result.tag_name].snapshot_id
        result.reason = "tag exists"
        return result
    trigger_ms = int(trigger.timestamp() * 1000)
    snapshot = _first_at_or_after(table, trigger_ms)
    if snapshot is None:
        result.reason = f"no snapshot at or after {trigger.isoformat()} yet"
        return result
    delay_ms = snapshot.timestamp_ms - trigger_ms
    max_delay = config.tag_trigger_max_delay_minutes
    if max_delay > 0 and delay_ms > max_delay * 60_000:
        result.reason = (
            f"first snapshot after {trigger.isoformat()} came {delay_ms // 60_000} min later, "
            f"beyond tag.auto-create.trigger.max-delay.minutes={config.tag_trigger_max_delay_minutes}"
        )
        return result
    max_age = config.tag_max_age_ms if config.tag_max_age_ms > 0 else None
    table.manage_snapshots().create_tag(
        snapshot.snapshot_id, result.tag_name, max_ref_age_ms=max_age
    ).commit()
    result.snapshot_id = snapshot.snapshot_id
    result.created = True
    result.duration_s = time.monotonic() - started
    log.info("created tag %s on snapshot %s of %s", result.tag_name, snapshot.snapshot_id, result.table)
    return result
