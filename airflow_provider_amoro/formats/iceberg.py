"""Iceberg tables through the format seam (pyiceberg's public API only)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_amoro.formats.base import (
    Capabilities,
    Column,
    FileKind,
    FormatName,
    SnapshotRecord,
    TableFile,
    TableTotals,
)
from airflow_provider_amoro.properties import MAINTENANCE_ACTIONS, OPTIMIZING_KINDS, SNAPSHOT_PRODUCER

if TYPE_CHECKING:
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

#: Format versions the engine optimizes and maintains.
SUPPORTED_FORMAT_VERSIONS = frozenset({1, 2})

#: Amoro's markers of a Mixed-Iceberg store (``amoro-formats.md`` A1): such a table is one half of a
#: keyed table and must not be optimized as a plain Iceberg table.
TABLE_FORMAT_PROPERTY = "table-format"
TABLE_STORE_PROPERTY = "mixed-format.table-store"

_KIND_BY_CONTENT = {
    0: FileKind.DATA,
    1: FileKind.POSITION_DELETES,
    2: FileKind.EQUALITY_DELETES,
}


def _int(summary: Mapping[str, str], key: str) -> int | None:
    raw = summary.get(key)
    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _summary(snapshot: Snapshot) -> dict[str, str]:
    if snapshot.summary is None:
        return {}
    return {str(k): str(v) for k, v in snapshot.summary.additional_properties.items()}


def snapshot_record(snapshot: Snapshot) -> SnapshotRecord:
    """One pyiceberg snapshot as a :class:`SnapshotRecord`."""
    summary = _summary(snapshot)
    operation = snapshot.summary.operation.value if snapshot.summary is not None else None
    return SnapshotRecord(
        snapshot_id=snapshot.snapshot_id,
        timestamp_ms=snapshot.timestamp_ms,
        operation=str(operation) if operation is not None else None,
        producer=summary.get(SNAPSHOT_PRODUCER),
        parent_id=snapshot.parent_snapshot_id,
        summary=summary,
        sequence_number=snapshot.sequence_number,
    )


def _flatten(fields: Any, prefix: str = "") -> Iterator[Column]:
    for f in fields:
        name = f"{prefix}{f.name}"
        yield Column(
            name=name, type=str(f.field_type), required=bool(f.required), field_id=f.field_id, doc=f.doc
        )
        nested = getattr(f.field_type, "fields", None)
        if nested:
            yield from _flatten(nested, prefix=f"{name}.")


class IcebergTable:
    """A pyiceberg :class:`~pyiceberg.table.Table` as a :class:`~airflow_provider_amoro.formats.TableFormat`.

    Args:
        table: the loaded table.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._by_id: dict[int, Snapshot] | None = None

    @property
    def format(self) -> FormatName:
        """Always :attr:`FormatName.ICEBERG` (Mixed-Iceberg stores are told apart by capabilities)."""
        return FormatName.ICEBERG

    @property
    def identifier(self) -> str:
        """``namespace.table``."""
        return ".".join(self.table.name())

    @property
    def uuid(self) -> str | None:
        """The table UUID from its metadata."""
        value = self.table.metadata.table_uuid
        return str(value) if value is not None else None

    @property
    def location(self) -> str:
        """The table location."""
        return str(self.table.location())

    @property
    def format_version(self) -> int:
        """Iceberg's format version (1, 2 or 3)."""
        return int(self.table.metadata.format_version)

    @property
    def format_label(self) -> str:
        """``iceberg v<format version>``."""
        return f"iceberg v{self.format_version}"

    @property
    def capabilities(self) -> Capabilities:
        """All kinds and actions on v1/v2 tables; none on v3 and on Mixed-Iceberg stores, with the reason."""
        props = self.table.properties
        if props.get(TABLE_FORMAT_PROPERTY, "").upper() in (
            FormatName.MIXED_ICEBERG.value,
            FormatName.MIXED_HIVE.value,
        ):
            store = props.get(TABLE_STORE_PROPERTY, "?")
            return Capabilities(
                reason=f"a {props[TABLE_FORMAT_PROPERTY]} {store} store: optimized only with its mixed table"
            )
        if self.format_version not in SUPPORTED_FORMAT_VERSIONS:
            return Capabilities(
                reason=f"Iceberg format v{self.format_version} is not supported yet "
                "(deletion vectors); only v1 and v2 tables are optimized"
            )
        return Capabilities(
            optimizing_kinds=frozenset(OPTIMIZING_KINDS),
            maintenance_actions=frozenset(a.name for a in MAINTENANCE_ACTIONS),
        )

    def properties(self) -> Mapping[str, str]:
        """The table properties."""
        return dict(self.table.properties)

    def columns(self) -> list[Column]:
        """The current schema, nested columns dotted."""
        return list(_flatten(self.table.schema().fields))

    def partition_fields(self) -> list[str]:
        """The default spec's fields as ``transform(column)``."""
        schema = self.table.schema()
        out = []
        for f in self.table.spec().fields:
            source = schema.find_column_name(f.source_id) or str(f.source_id)
            out.append(f"{f.transform}({source})")
        return out

    def change_token(self) -> str | None:
        """The metadata location: it changes with every commit."""
        location = self.table.metadata_location
        return str(location) if location else None

    def current_snapshot(self) -> SnapshotRecord | None:
        """The current snapshot of ``main``."""
        snapshot = self.table.current_snapshot()
        return snapshot_record(snapshot) if snapshot is not None else None

    def branch_head(self, branch: str = "main") -> int | None:
        """The snapshot id the branch or tag points at."""
        ref = self.table.metadata.refs.get(branch)
        return int(ref.snapshot_id) if ref is not None else None

    def snapshot(self, snapshot_id: int) -> SnapshotRecord | None:
        """A retained snapshot by id (an index built on first use: walks stay linear)."""
        if self._by_id is None:
            self._by_id = {s.snapshot_id: s for s in self.table.metadata.snapshots}
        found = self._by_id.get(snapshot_id)
        return snapshot_record(found) if found is not None else None

    def snapshots(self) -> list[SnapshotRecord]:
        """Retained snapshots, oldest first."""
        return sorted((snapshot_record(s) for s in self.table.snapshots()), key=lambda r: r.timestamp_ms)

    def totals(self) -> TableTotals:
        """Totals from the current snapshot's summary (no manifest reads)."""
        snapshot = self.table.current_snapshot()
        if snapshot is None:
            return TableTotals(0, 0, 0, 0, None, None)
        summary = _summary(snapshot)
        return TableTotals(
            data_files=_int(summary, "total-data-files") or 0,
            delete_files=_int(summary, "total-delete-files") or 0,
            records=_int(summary, "total-records"),
            total_size=_int(summary, "total-files-size") or 0,
            snapshot_id=snapshot.snapshot_id,
            last_commit_ms=snapshot.timestamp_ms,
        )

    def files(self) -> Iterator[TableFile]:
        """Live data and delete files of the current snapshot, from its manifests."""
        snapshot = self.table.current_snapshot()
        if snapshot is None:
            return
        io = self.table.io
        schema = self.table.schema()
        specs = self.table.specs()
        for manifest in snapshot.manifests(io):
            spec = specs[manifest.partition_spec_id]
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                df = entry.data_file
                partition = spec.partition_to_path(df.partition, schema) if spec.fields else ""
                yield TableFile(
                    path=df.file_path,
                    kind=_KIND_BY_CONTENT.get(int(df.content), FileKind.DATA),
                    size_bytes=int(df.file_size_in_bytes),
                    record_count=int(df.record_count),
                    partition=partition,
                )
