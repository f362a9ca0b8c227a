"""Data expiration (Amoro's ``data-expire.*``): drop whole data files or partitions older than the retention.

The expiry point is ``base - data-expire.retention-time``, where the base is the commit time of the
latest retained snapshot whose ``snapshot-producer`` is not ``OPTIMIZE`` nor a maintenance action
(``DATA_EXPIRATION``, ``CLEAN_DANGLING_DELETE``), as Amoro's ``LAST_COMMIT_TIME`` rule (the
default; no such snapshot: nothing expires), or the clock (``CURRENT_TIME``). Optimizing and
maintenance commits therefore never move the expiry point: when writers pause, nothing more
expires. A value expires when it is not newer than that point (a value exactly at the point has
expired, as in Amoro), compared in the field's own type:

- ``timestamp`` / ``timestamptz``: microseconds (UTC);
- ``date``: a day expires when it ends at or before the expiry point;
- ``long`` / ``int``: epoch milliseconds or seconds (``data-expire.datetime-number-format``);
- ``string``: the expiry point formatted with ``data-expire.datetime-string-pattern`` (a Java
  pattern such as ``yyyy-MM-dd``), compared as text, as Amoro does; a pattern whose values do not
  sort as text in time order (``dd-MM-yyyy``, ``yy-MM-dd``, ``yyyy-M-d``) is refused with
  :class:`InvalidPropertyError` (see :func:`.datefmt.check_sorts_as_text`).
  With a date-only pattern the day of the expiry point has expired (its text equals the point's).

Levels:

- ``file``: a data file is dropped when the upper bound of the field in its statistics has expired
  and it holds no NULL in the field (rows without a value never expire).
- ``partition``: a data file is dropped when its partition's whole value range has expired: the
  partition has a field on the expiry column with an ``identity``, ``year``, ``month``, ``day`` or
  ``hour`` transform (``truncate`` for numbers), and the range's end is at or before the expiry
  point. Files of a spec without such a field are never dropped at this level.

Rows are never rewritten. The removal is ONE ``delete`` snapshot (pyiceberg's overwrite producer
with operation ``delete``, only whole files removed, with pyiceberg's retry on conflicts, which
fails if a file to drop was removed concurrently). Delete files that then apply to no live data
file are removed by a second, ``replace`` snapshot (see :mod:`.dangling`); both carry
``snapshot-producer=DATA_EXPIRATION``, as Amoro's two data-expiration commits do.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any, cast

from pyiceberg.conversions import from_bytes
from pyiceberg.manifest import DataFile, DataFileContent, ManifestContent
from pyiceberg.table.snapshots import Operation
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
    IntegerType,
    LongType,
    PrimitiveType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from airflow_provider_amoro.iceberg_compat import OverwriteFiles
from airflow_provider_amoro.maintenance.config import InvalidPropertyError, MaintenanceConfig
from airflow_provider_amoro.maintenance.datefmt import check_sorts_as_text, format_java
from airflow_provider_amoro.maintenance.results import DataExpireResult, to_epoch_ms
from airflow_provider_amoro.properties import (
    AMORO_MAINTAIN_COMMITS,
    DATA_EXPIRE_DATETIME_STRING_PATTERN,
    DATA_EXPIRE_FIELD,
    DATA_EXPIRE_RETENTION_TIME,
    PRODUCER_DATA_EXPIRATION,
    SNAPSHOT_PRODUCER,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot
    from pyiceberg.types import IcebergType

__all__ = ["expire_data"]

logger = logging.getLogger(__name__)
SAMPLE = 50
_US_PER_DAY = 86_400_000_000
_US_PER_HOUR = 3_600_000_000
_EPOCH = dt.date(1970, 1, 1)


def _month_start_day(months: int) -> int:
    """Days since epoch of the first day of ``months`` months after 1970-01."""
    year, month = divmod(months, 12)
    return (dt.date(1970 + year, month + 1, 1) - _EPOCH).days


class _Cutoff:
    """The expiry point in the domain of one field type.

    ``expired(v)`` is ``v <= threshold`` (Amoro: a value at the expiry point has expired), except
    for dates: ``v < threshold``, the day holding the expiry point is not over yet.
    """

    def __init__(self, field_type: IcebergType, cutoff_ms: int, config: MaintenanceConfig) -> None:
        self.field_type = field_type
        self.cutoff_ms = cutoff_ms
        self.threshold: Any
        self.inclusive = True
        if isinstance(field_type, (TimestampType, TimestamptzType)):
            self.threshold = cutoff_ms * 1000
        elif isinstance(field_type, DateType):
            self.threshold = cutoff_ms // 86_400_000  # the day holding the expiry point
            self.inclusive = False
        elif isinstance(field_type, (LongType, IntegerType)):
            if config.data_expire_datetime_number_format == "TIMESTAMP_S":
                self.threshold = cutoff_ms // 1000
            else:
                self.threshold = cutoff_ms
        elif isinstance(field_type, StringType):
            # values are compared as text (file bounds, partition values): refuse a pattern whose
            # values do not sort in time order (``dd-MM-yyyy`` would expire rows dated 2099)
            check_sorts_as_text(
                DATA_EXPIRE_DATETIME_STRING_PATTERN, config.data_expire_datetime_string_pattern
            )
            when = dt.datetime.fromtimestamp(cutoff_ms / 1000, tz=dt.timezone.utc)
            self.threshold = format_java(
                when,
                DATA_EXPIRE_DATETIME_STRING_PATTERN,
                config.data_expire_datetime_string_pattern,
            )
        else:
            raise InvalidPropertyError(
                DATA_EXPIRE_FIELD,
                config.data_expire_field,
                f"type {field_type} is not supported (timestamp, timestamptz, date, long, int or string)",
            )

    def expired(self, value: Any) -> bool:
        """Whether a value of the field has expired."""
        if value is None:
            return False
        return bool(value <= self.threshold) if self.inclusive else bool(value < self.threshold)

    def partition_expired(self, transform: Any, value: Any) -> bool:
        """Whether every value a partition of ``transform`` with partition value ``value`` holds expired."""
        if value is None:
            return False
        ts = isinstance(self.field_type, (TimestampType, TimestamptzType))
        date = isinstance(self.field_type, DateType)
        if isinstance(transform, IdentityTransform):
            return self.expired(value)
        if isinstance(transform, TruncateTransform) and isinstance(self.field_type, (LongType, IntegerType)):
            return bool(value + transform.width <= self.threshold)
        if not (ts or date):
            return False
        if isinstance(transform, HourTransform) and ts:
            end_us = (value + 1) * _US_PER_HOUR
            return bool(end_us <= self.threshold)
        if isinstance(transform, DayTransform):
            end_day = value + 1
        elif isinstance(transform, MonthTransform):
            end_day = _month_start_day(value + 1)
        elif isinstance(transform, YearTransform):
            end_day = (dt.date(1970 + value + 1, 1, 1) - _EPOCH).days
        else:
            return False
        if ts:
            return bool(end_day * _US_PER_DAY <= self.threshold)
        return bool(end_day <= self.threshold)

    def describe(self) -> str:
        """The expiry point as ISO-8601 text (UTC)."""
        return dt.datetime.fromtimestamp(self.cutoff_ms / 1000, tz=dt.timezone.utc).isoformat()


def _partition_expired(
    cutoff: _Cutoff, spec: PartitionSpec, field_id: int, data_file: DataFile
) -> bool | None:
    """None when the spec has no usable partition field on the expiry column."""
    found = False
    for position, partition_field in enumerate(spec.fields):
        if partition_field.source_id != field_id:
            continue
        found = True
        if cutoff.partition_expired(partition_field.transform, data_file.partition[position]):
            return True
    return False if found else None


def _file_expired(cutoff: _Cutoff, field_id: int, data_file: DataFile) -> bool:
    nulls = (data_file.null_value_counts or {}).get(field_id)
    upper = (data_file.upper_bounds or {}).get(field_id)
    if upper is None or nulls is None or nulls > 0:
        return False
    return cutoff.expired(from_bytes(cast(PrimitiveType, cutoff.field_type), upper))


def last_data_commit(table: Table) -> Snapshot | None:
    """The latest retained snapshot not produced by optimizing or a maintenance action (Amoro's rule).

    Every retained snapshot counts (any branch), by commit time; a snapshot's producer is its
    summary's ``snapshot-producer``.
    """
    found: Snapshot | None = None
    for snap in table.metadata.snapshots:
        producer = snap.summary[SNAPSHOT_PRODUCER] if snap.summary is not None else None
        if producer in AMORO_MAINTAIN_COMMITS:
            continue
        if found is None or snap.timestamp_ms > found.timestamp_ms:
            found = snap
    return found


def expire_data(
    table: Table,
    *,
    now: dt.datetime | int | None = None,
    dry_run: bool = False,
    log: logging.Logger | None = None,
    properties: Mapping[str, str] | None = None,
) -> DataExpireResult:
    """Drop data files (``file`` level) or whole partitions (``partition`` level) older than the retention.

    Args:
        table: the pyiceberg table (refreshed in place).
        now: the current time for ``base-on-rule=CURRENT_TIME`` (datetime, naive = UTC, or epoch ms).
        dry_run: report what would be dropped without committing.
        log: logger for progress.
        properties: property overrides applied over the table's own properties (e.g. from the DAG
            factory's configuration).

    Returns:
        A :class:`DataExpireResult`; ``skipped`` when ``gc.enabled`` or ``data-expire.enabled`` is false.

    Raises:
        InvalidPropertyError: a bad or missing ``data-expire.*`` value, an unknown field or an
            unsupported field type.
    """
    log = log or logger
    started = time.monotonic()
    result = DataExpireResult(table=".".join(table.name()), dry_run=dry_run)
    config = MaintenanceConfig.for_table(table, properties)
    result.level = config.data_expire_level
    if not config.gc_enabled:
        return result.skip("gc.enabled=false")
    if not config.data_expire_enabled:
        return result.skip("data-expire.enabled=false")
    if config.data_expire_field is None:
        raise InvalidPropertyError(DATA_EXPIRE_FIELD, None, "required when data-expire.enabled=true")
    if config.data_expire_retention_ms is None:
        raise InvalidPropertyError(DATA_EXPIRE_RETENTION_TIME, None, "required when data-expire.enabled=true")
    result.expire_field = config.data_expire_field
    schema = table.schema()
    try:
        field = schema.find_field(config.data_expire_field, case_sensitive=False)
    except ValueError:
        raise InvalidPropertyError(
            DATA_EXPIRE_FIELD, config.data_expire_field, "no such column in the table schema"
        ) from None
    snapshot = table.current_snapshot()
    if snapshot is None:
        return result.skip("the table has no snapshot")
    if config.data_expire_base_on_rule == "LAST_COMMIT_TIME":
        last_write = last_data_commit(table)
        if last_write is None:
            return result.skip("no retained snapshot other than optimizing or maintenance commits")
        base_ms = int(last_write.timestamp_ms)
        log.info(
            "expiry base: snapshot %s committed at %d ms (last data commit)", last_write.snapshot_id, base_ms
        )
    else:
        base_ms = to_epoch_ms(now)
    cutoff = _Cutoff(field.field_type, base_ms - config.data_expire_retention_ms, config)
    result.cutoff = cutoff.describe()

    drop, partitions = _expired_files(table, snapshot, cutoff, field.field_id, config.data_expire_level)
    result.expired_data_files = len(drop)
    result.expired_records = sum(int(f.record_count) for f in drop)
    result.expired_bytes = sum(int(f.file_size_in_bytes) for f in drop)
    result.expired_partitions = sorted(partitions)[:SAMPLE]
    log.info(
        "data expiry of %s (%s level, %s < %s): %d data files, %d records",
        result.table,
        result.level,
        result.expire_field,
        cutoff.threshold,
        len(drop),
        result.expired_records,
    )
    if drop and not dry_run:
        _drop(table, drop, result, log, properties)
    result.duration_s = time.monotonic() - started
    return result


def _expired_files(
    table: Table, snapshot: Snapshot, cutoff: _Cutoff, field_id: int, level: str
) -> tuple[list[DataFile], set[str]]:
    """The live data files past the cutoff (``file`` level) or in expired partitions (``partition``)."""
    schema = table.schema()
    specs = table.specs()
    drop: list[DataFile] = []
    partitions: set[str] = set()
    for manifest in snapshot.manifests(table.io):
        if manifest.content != ManifestContent.DATA:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            data_file = entry.data_file
            if data_file.content != DataFileContent.DATA:
                continue
            spec = specs[data_file.spec_id]
            if level == "partition":
                expired = _partition_expired(cutoff, spec, field_id, data_file) is True
                if expired:
                    partitions.add(spec.partition_to_path(data_file.partition, schema))
            else:
                expired = _file_expired(cutoff, field_id, data_file)
            if expired:
                drop.append(data_file)
    return drop, partitions


def _drop(
    table: Table,
    drop: list[DataFile],
    result: DataExpireResult,
    log: logging.Logger,
    properties: Mapping[str, str] | None,
) -> None:
    """Commit the deletion of ``drop`` (one DATA_EXPIRATION snapshot), then its dangling deletes."""
    with table.transaction() as tx:
        producer = OverwriteFiles(
            Operation.DELETE,
            tx,
            table.io,
            snapshot_properties={SNAPSHOT_PRODUCER: PRODUCER_DATA_EXPIRATION},
        )
        for data_file in drop:
            producer.delete_data_file(data_file)
        producer.commit()
    current = table.current_snapshot()
    result.snapshot_id = current.snapshot_id if current is not None else None
    from airflow_provider_amoro.maintenance.dangling import clean_dangling_delete_files

    dangling = clean_dangling_delete_files(
        table, log=log, force=True, producer=PRODUCER_DATA_EXPIRATION, properties=properties
    )
    result.expired_delete_files = len(dangling.removed_paths)
