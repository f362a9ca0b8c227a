"""The format seam: what the rest of the product asks of a managed table, whatever its format.

The DAG factory, sensors, triggers, runtime and UI see a table through :class:`TableFormat`.
Iceberg is the first implementation (:mod:`airflow_provider_amoro.formats.iceberg`); Amoro's other
formats (Mixed-Iceberg, Mixed-Hive, Paimon, Hudi) plug in beside it with the same shapes: a
format that cannot be optimized says so in :attr:`TableFormat.capabilities` and still lists its
files, snapshots (or timeline instants) and health for the Lakehouse page.

Everything here is metadata: no method reads data files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, runtime_checkable

from airflow_provider_amoro.properties import OptimizingKind


class FormatName(str, Enum):
    """Table formats Amoro manages (Amoro's ``TableFormat`` names)."""

    ICEBERG = "ICEBERG"
    MIXED_ICEBERG = "MIXED_ICEBERG"
    MIXED_HIVE = "MIXED_HIVE"
    PAIMON = "PAIMON"
    HUDI = "HUDI"


class FileKind(str, Enum):
    """What a file of a table holds, across formats."""

    DATA = "data"
    POSITION_DELETES = "position-deletes"
    EQUALITY_DELETES = "equality-deletes"
    #: Change records kept beside the data (Hudi log files, Mixed-Iceberg change store files).
    CHANGE = "change"


@dataclass(frozen=True)
class Column:
    """A top-level or nested column (nested names are dotted)."""

    name: str
    type: str
    required: bool
    field_id: int | None = None
    doc: str | None = None


@dataclass(frozen=True)
class TableFile:
    """One live file of the current table state.

    Attributes:
        path: the file's full location.
        kind: what it holds.
        size_bytes: its size.
        record_count: rows (or delete records) in it.
        partition: a readable partition key (``""`` when unpartitioned).
    """

    path: str
    kind: FileKind
    size_bytes: int
    record_count: int
    partition: str = ""


@dataclass(frozen=True)
class SnapshotRecord:
    """One snapshot (Iceberg, Paimon) or completed timeline instant (Hudi).

    Attributes:
        snapshot_id: the snapshot id (Hudi: the instant time as an integer).
        timestamp_ms: commit time in epoch milliseconds.
        operation: the format's operation (append, overwrite, replace, delete; Paimon commit kinds).
        producer: who committed it, when the format records it (``OPTIMIZE`` for optimizing commits).
        parent_id: the previous snapshot, when known.
        summary: the format's own summary, as strings.
    """

    snapshot_id: int
    timestamp_ms: int
    operation: str | None
    producer: str | None = None
    parent_id: int | None = None
    summary: Mapping[str, str] = field(default_factory=dict)
    #: Iceberg's sequence number of the snapshot (None where the format has none).
    sequence_number: int | None = None


@dataclass(frozen=True)
class TableTotals:
    """Totals of the current state, from metadata only (no manifest or file reads where possible).

    ``None`` means the format's metadata does not say.
    """

    data_files: int
    delete_files: int
    records: int | None
    #: Bytes of data and delete files together.
    total_size: int
    snapshot_id: int | None
    last_commit_ms: int | None

    @property
    def files(self) -> int:
        """Data plus delete files."""
        return self.data_files + self.delete_files


@dataclass(frozen=True)
class Capabilities:
    """What the provider can do to a table of this format."""

    optimizing_kinds: frozenset[OptimizingKind] = frozenset()
    maintenance_actions: frozenset[str] = frozenset()
    #: Why optimizing is not available, when it is not (shown in the Lakehouse page).
    reason: str | None = None

    @property
    def can_optimize(self) -> bool:
        """Whether any optimizing kind is supported."""
        return bool(self.optimizing_kinds)


@runtime_checkable
class TableFormat(Protocol):
    """A managed table seen through its format: identity, structure, files, history, change token."""

    @property
    def format(self) -> FormatName:
        """The table's format."""

    @property
    def identifier(self) -> str:
        """``namespace.table`` in its catalog."""

    @property
    def uuid(self) -> str | None:
        """The table's stable id (survives renames; a re-created table gets a new one)."""

    @property
    def location(self) -> str:
        """The table's root location."""

    @property
    def format_label(self) -> str:
        """A short label for people, e.g. ``iceberg v2``."""

    @property
    def capabilities(self) -> Capabilities:
        """What the provider can do to this table."""

    def properties(self) -> Mapping[str, str]:
        """The table's properties (Amoro's names)."""

    def columns(self) -> list[Column]:
        """The current schema, flattened (nested columns dotted)."""

    def partition_fields(self) -> list[str]:
        """The current partitioning, e.g. ``["day(ts)", "bucket[16](id)"]``; empty when none."""

    def change_token(self) -> str | None:
        """A token that changes with every commit (a metadata location, a timeline instant)."""

    def current_snapshot(self) -> SnapshotRecord | None:
        """The current snapshot, None for an empty table."""

    def branch_head(self, branch: str = "main") -> int | None:
        """The snapshot a branch or tag points at, None when it does not exist (or the table is empty)."""

    def snapshot(self, snapshot_id: int) -> SnapshotRecord | None:
        """One retained snapshot by id, None when it is not retained."""

    def snapshots(self) -> list[SnapshotRecord]:
        """Every retained snapshot, oldest first."""

    def totals(self) -> TableTotals:
        """Totals of the current state, from metadata."""

    def files(self) -> Iterator[TableFile]:
        """Every live file of the current state."""
