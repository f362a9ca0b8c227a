"""The provider's one vocabulary: table property names and defaults, optimizing kinds, producers.

Every name that users write (Amoro's table properties), every value the provider writes into a
snapshot summary, and the maintenance action table are defined here once; the engine, operators,
DAG factory, runtime and UI import them. Names and defaults follow Apache Amoro's
``TableProperties`` (see ``shared/docs/amoro-semantics.md``), so tables keep the properties they
had under Amoro.

Durations in Amoro's maintenance properties carry their unit (``720min``, ``1d``); the
``self-optimizing.*`` intervals are plain milliseconds, as Amoro writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

#: The Airflow connection id used when none is given.
DEFAULT_CONN_ID = "amoro_default"


class OptimizingKind(str, Enum):
    """The three kinds of optimizing process, as Amoro names them (lower case values)."""

    MINOR = "minor"
    MAJOR = "major"
    FULL = "full"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: object, *, allow_auto: bool = False) -> OptimizingKind | None:
        """Parse a kind given by a user (any case); ``None`` (and ``"auto"`` when allowed) mean "decide".

        Raises:
            ValueError: naming the value and the accepted kinds.
        """
        if value is None or isinstance(value, OptimizingKind):
            return value
        text = str(value).strip().lower()
        if allow_auto and text == "auto":
            return None
        for kind in cls:
            if kind.value == text:
                return kind
        accepted = ", ".join(k.value for k in cls) + (", auto" if allow_auto else "")
        raise ValueError(f"unknown optimizing kind {value!r}; expected one of: {accepted}")


#: All kinds, in escalating order.
OPTIMIZING_KINDS: tuple[OptimizingKind, ...] = tuple(OptimizingKind)

# --------------------------------------------------------------------------- snapshot producers

#: Snapshot summary key naming who committed a snapshot (Amoro's ``snapshot-producer``).
SNAPSHOT_PRODUCER = "snapshot-producer"
#: Amoro's producer value for an optimizing commit.
PRODUCER_OPTIMIZE = "OPTIMIZE"
#: Amoro's producer value for a data-expiration commit.
PRODUCER_DATA_EXPIRATION = "DATA_EXPIRATION"
#: Amoro's producer value for a dangling-delete cleanup commit.
PRODUCER_CLEAN_DANGLING_DELETE = "CLEAN_DANGLING_DELETE"
#: Producers of the commits Amoro (and this provider) make itself: not user writes.
AMORO_MAINTAIN_COMMITS = frozenset(
    {PRODUCER_OPTIMIZE, PRODUCER_DATA_EXPIRATION, PRODUCER_CLEAN_DANGLING_DELETE}
)
#: Flink writes its last committed checkpoint id into the snapshot summary; it restores from it.
FLINK_MAX_COMMITTED_CHECKPOINT_ID = "flink.max-committed-checkpoint-id"

# --------------------------------------------------------------------------- self-optimizing.*

ENABLED = "self-optimizing.enabled"
ENABLED_DEFAULT = True

GROUP = "self-optimizing.group"
GROUP_DEFAULT = "default"

QUOTA = "self-optimizing.quota"
QUOTA_DEFAULT = 0.5

EXECUTE_NUM_RETRIES = "self-optimizing.execute.num-retries"
EXECUTE_NUM_RETRIES_DEFAULT = 5

TARGET_SIZE = "self-optimizing.target-size"
TARGET_SIZE_DEFAULT = 134217728  # 128 MB

MAX_TASK_SIZE = "self-optimizing.max-task-size-bytes"
MAX_TASK_SIZE_DEFAULT = 134217728  # 128 MB

FRAGMENT_RATIO = "self-optimizing.fragment-ratio"
FRAGMENT_RATIO_DEFAULT = 8

MIN_TARGET_SIZE_RATIO = "self-optimizing.min-target-size-ratio"
MIN_TARGET_SIZE_RATIO_DEFAULT = 0.75

MINOR_TRIGGER_FILE_COUNT = "self-optimizing.minor.trigger.file-count"
MINOR_TRIGGER_FILE_COUNT_DEFAULT = 12

MINOR_TRIGGER_INTERVAL = "self-optimizing.minor.trigger.interval"
MINOR_TRIGGER_INTERVAL_DEFAULT = 3600000  # 1 h in ms; negative: never by interval

MAJOR_TRIGGER_DUPLICATE_RATIO = "self-optimizing.major.trigger.duplicate-ratio"
MAJOR_TRIGGER_DUPLICATE_RATIO_DEFAULT = 0.1

FULL_TRIGGER_INTERVAL = "self-optimizing.full.trigger.interval"
FULL_TRIGGER_INTERVAL_DEFAULT = -1  # ms; negative: never

FULL_REWRITE_ALL_FILES = "self-optimizing.full.rewrite-all-files"
FULL_REWRITE_ALL_FILES_DEFAULT = True

ALLOW_PARTIAL_COMMIT = "self-optimizing.allow-partial-commit"
ALLOW_PARTIAL_COMMIT_DEFAULT = False

FILTER = "self-optimizing.filter"
FILTER_DEFAULT: str | None = None

MIN_PLAN_INTERVAL = "self-optimizing.min-plan-interval"
MIN_PLAN_INTERVAL_DEFAULT = 60000  # ms

MAX_FILE_COUNT = "self-optimizing.max-file-count"
MAX_FILE_COUNT_DEFAULT = 10000  # input files (data + delete) of one optimizing process

#: Every ``self-optimizing.*`` property the provider reads, in documentation order.
OPTIMIZING_PROPERTY_NAMES: tuple[str, ...] = (
    ENABLED,
    GROUP,
    QUOTA,
    EXECUTE_NUM_RETRIES,
    TARGET_SIZE,
    MAX_TASK_SIZE,
    FRAGMENT_RATIO,
    MIN_TARGET_SIZE_RATIO,
    MINOR_TRIGGER_FILE_COUNT,
    MINOR_TRIGGER_INTERVAL,
    MAJOR_TRIGGER_DUPLICATE_RATIO,
    FULL_TRIGGER_INTERVAL,
    FULL_REWRITE_ALL_FILES,
    ALLOW_PARTIAL_COMMIT,
    FILTER,
    MIN_PLAN_INTERVAL,
    MAX_FILE_COUNT,
)

# --------------------------------------------------------------------------- maintenance

GC_ENABLED = "gc.enabled"
GC_ENABLED_DEFAULT = True
TABLE_EXPIRE_ENABLED = "table-expire.enabled"
TABLE_EXPIRE_ENABLED_DEFAULT = True
SNAPSHOT_KEEP_DURATION = "snapshot.keep.duration"
SNAPSHOT_KEEP_DURATION_DEFAULT = "720min"
SNAPSHOT_KEEP_MIN_COUNT = "snapshot.keep.min-count"
SNAPSHOT_KEEP_MIN_COUNT_DEFAULT = 1
#: Iceberg's property (pyiceberg acts on it at each commit; snapshot expiry also removes leftovers).
METADATA_DELETE_AFTER_COMMIT_ENABLED = "write.metadata.delete-after-commit.enabled"
METADATA_DELETE_AFTER_COMMIT_ENABLED_DEFAULT = False
CLEAN_ORPHAN_FILE_ENABLED = "clean-orphan-file.enabled"
CLEAN_ORPHAN_FILE_ENABLED_DEFAULT = False
CLEAN_ORPHAN_FILE_MIN_EXISTING_TIME_MINUTES = "clean-orphan-file.min-existing-time-minutes"
CLEAN_ORPHAN_FILE_MIN_EXISTING_TIME_MINUTES_DEFAULT = 2880
CLEAN_DANGLING_DELETE_FILES_ENABLED = "clean-dangling-delete-files.enabled"
CLEAN_DANGLING_DELETE_FILES_ENABLED_DEFAULT = True
DATA_EXPIRE_ENABLED = "data-expire.enabled"
DATA_EXPIRE_ENABLED_DEFAULT = False
DATA_EXPIRE_LEVEL = "data-expire.level"
DATA_EXPIRE_LEVEL_DEFAULT = "partition"
DATA_EXPIRE_FIELD = "data-expire.field"
DATA_EXPIRE_RETENTION_TIME = "data-expire.retention-time"
DATA_EXPIRE_DATETIME_STRING_PATTERN = "data-expire.datetime-string-pattern"
DATA_EXPIRE_DATETIME_STRING_PATTERN_DEFAULT = "yyyy-MM-dd"
DATA_EXPIRE_DATETIME_NUMBER_FORMAT = "data-expire.datetime-number-format"
DATA_EXPIRE_DATETIME_NUMBER_FORMAT_DEFAULT = "TIMESTAMP_MS"
DATA_EXPIRE_BASE_ON_RULE = "data-expire.base-on-rule"
DATA_EXPIRE_BASE_ON_RULE_DEFAULT = "LAST_COMMIT_TIME"
TAG_AUTO_CREATE_ENABLED = "tag.auto-create.enabled"
TAG_AUTO_CREATE_ENABLED_DEFAULT = False
TAG_AUTO_CREATE_TRIGGER_PERIOD = "tag.auto-create.trigger.period"
TAG_AUTO_CREATE_TRIGGER_PERIOD_DEFAULT = "daily"
TAG_AUTO_CREATE_TRIGGER_OFFSET_MINUTES = "tag.auto-create.trigger.offset.minutes"
TAG_AUTO_CREATE_TRIGGER_OFFSET_MINUTES_DEFAULT = 0
TAG_AUTO_CREATE_TRIGGER_MAX_DELAY_MINUTES = "tag.auto-create.trigger.max-delay.minutes"
TAG_AUTO_CREATE_TRIGGER_MAX_DELAY_MINUTES_DEFAULT = 60
TAG_AUTO_CREATE_MAX_AGE_MS = "tag.auto-create.max-age-ms"
TAG_AUTO_CREATE_MAX_AGE_MS_DEFAULT = -1
TAG_AUTO_CREATE_TAG_FORMAT = "tag.auto-create.tag-format"
TAG_AUTO_CREATE_TAG_FORMAT_DEFAULT = "'tag-'yyyyMMdd"
#: Amoro picks the default tag format by period (one tag name per period).
TAG_AUTO_CREATE_TAG_FORMAT_DEFAULTS = {
    "hourly": "'tag-'yyyyMMddHH",
    "daily": TAG_AUTO_CREATE_TAG_FORMAT_DEFAULT,
    "monthly": "'tag-'yyyyMM",
}


@dataclass(frozen=True)
class MaintenanceAction:
    """One maintenance action: its name (a task id in the table DAG), label and switch.

    Attributes:
        name: the action's name, e.g. ``expire_snapshots``.
        label: what the Lakehouse page calls it.
        enabled_property: the table property that switches it on or off.
        enabled_default: the property's default.
        default_interval: how often the table DAG runs it by default (Amoro's AMS defaults).
        gc_controlled: whether ``gc.enabled=false`` turns it off too.
    """

    name: str
    label: str
    enabled_property: str
    enabled_default: bool
    default_interval: timedelta
    gc_controlled: bool = True


#: The maintenance actions, in the order they run.
MAINTENANCE_ACTIONS: tuple[MaintenanceAction, ...] = (
    MaintenanceAction(
        "expire_snapshots",
        "Snapshot expiry",
        TABLE_EXPIRE_ENABLED,
        TABLE_EXPIRE_ENABLED_DEFAULT,
        timedelta(hours=1),
    ),
    MaintenanceAction(
        "clean_dangling_delete_files",
        "Dangling delete files",
        CLEAN_DANGLING_DELETE_FILES_ENABLED,
        CLEAN_DANGLING_DELETE_FILES_ENABLED_DEFAULT,
        timedelta(hours=1),
    ),
    MaintenanceAction(
        "clean_orphan_files",
        "Orphan files",
        CLEAN_ORPHAN_FILE_ENABLED,
        CLEAN_ORPHAN_FILE_ENABLED_DEFAULT,
        timedelta(days=1),
    ),
    MaintenanceAction(
        "expire_data", "Data expiration", DATA_EXPIRE_ENABLED, DATA_EXPIRE_ENABLED_DEFAULT, timedelta(days=1)
    ),
    MaintenanceAction(
        "create_tags",
        "Auto tags",
        TAG_AUTO_CREATE_ENABLED,
        TAG_AUTO_CREATE_ENABLED_DEFAULT,
        timedelta(minutes=15),
        gc_controlled=False,
    ),
)

#: The same actions by name.
MAINTENANCE_ACTIONS_BY_NAME: dict[str, MaintenanceAction] = {a.name: a for a in MAINTENANCE_ACTIONS}

#: Prefixes of the table properties the provider reads (the DAG factory accepts them as overrides).
AMORO_PROPERTY_PREFIXES: tuple[str, ...] = (
    "self-optimizing.",
    "table-expire.",
    "snapshot.keep.",
    "clean-orphan-file.",
    "clean-dangling-delete-files.",
    "data-expire.",
    "tag.auto-create.",
    "gc.",
)
