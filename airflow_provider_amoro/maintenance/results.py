"""Result objects of the maintenance actions: dataclasses with JSON-safe ``to_dict()`` metrics."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from typing_extensions import Self

__all__ = [
    "DanglingResult",
    "DataExpireResult",
    "ExpireResult",
    "OrphanResult",
    "TagResult",
    "to_epoch_ms",
]


def to_epoch_ms(now: dt.datetime | int | None) -> int:
    """``now`` as epoch milliseconds: a datetime (naive = UTC), epoch ms, or None for the clock."""
    if now is None:
        return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    if isinstance(now, dt.datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.timezone.utc)
        return int(now.timestamp() * 1000)
    return int(now)


@dataclass
class _Result:
    """Common fields: whether the action was skipped (and why), dry run, duration."""

    table: str = ""
    skipped: bool = False
    skip_reason: str | None = None
    dry_run: bool = False
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe metrics (numbers, strings, lists, booleans)."""
        return asdict(self)

    def skip(self, reason: str) -> Self:
        """Mark the action as skipped for ``reason`` and return the result."""
        self.skipped, self.skip_reason = True, reason
        return self


@dataclass
class ExpireResult(_Result):
    """What :func:`~airflow_provider_amoro.maintenance.expire_snapshots` did (or would do, in a dry run).

    Attributes:
        expired_snapshot_ids: snapshots removed from the metadata.
        removed_refs: tags/branches removed because they passed their ``max-ref-age-ms``.
        kept_snapshots: snapshots left in the table.
        deleted_data_files / deleted_delete_files / deleted_manifests / deleted_manifest_lists /
        deleted_statistics_files / deleted_metadata_files: files deleted (or deletable, in a dry run)
        by kind (metadata files: see ``write.metadata.delete-after-commit.enabled``).
        bytes_freed: their total size.
        failed_deletes: files that could not be deleted (they are left for orphan cleaning).
        deleted_paths_sample: up to 20 deleted paths, for the log and the UI.
    """

    expired_snapshot_ids: list[int] = field(default_factory=list)
    removed_refs: list[str] = field(default_factory=list)
    kept_snapshots: int = 0
    deleted_data_files: int = 0
    deleted_delete_files: int = 0
    deleted_manifests: int = 0
    deleted_manifest_lists: int = 0
    deleted_statistics_files: int = 0
    deleted_metadata_files: int = 0
    bytes_freed: int = 0
    failed_deletes: int = 0
    deleted_paths_sample: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe metrics, with the total ``deleted_files``."""
        return {**super().to_dict(), "deleted_files": self.deleted_files}

    @property
    def deleted_files(self) -> int:
        """All files deleted (or deletable)."""
        return (
            self.deleted_data_files
            + self.deleted_delete_files
            + self.deleted_manifests
            + self.deleted_manifest_lists
            + self.deleted_statistics_files
            + self.deleted_metadata_files
        )


@dataclass
class OrphanResult(_Result):
    """What :func:`~airflow_provider_amoro.maintenance.clean_orphan_files` did.

    Attributes:
        listed_files: files found under ``data/`` and ``metadata/``.
        referenced_files: distinct files the table references.
        orphan_files: unreferenced files old enough to delete (deleted unless dry run).
        too_young_files: unreferenced files kept because they are younger than the safety window.
        deleted_files / failed_deletes / bytes_freed: outcome of the deletion.
        removed_empty_folders: empty folders removed under a local ``data/``.
        orphan_paths_sample: up to 20 orphan paths.
    """

    listed_files: int = 0
    referenced_files: int = 0
    orphan_files: int = 0
    too_young_files: int = 0
    deleted_files: int = 0
    failed_deletes: int = 0
    bytes_freed: int = 0
    removed_empty_folders: int = 0
    orphan_paths_sample: list[str] = field(default_factory=list)


@dataclass
class DanglingResult(_Result):
    """What :func:`~airflow_provider_amoro.maintenance.clean_dangling_delete_files` did.

    Attributes:
        delete_files: live delete files examined.
        dangling_position_deletes / dangling_equality_deletes: delete files that apply to no live data file.
        removed_paths: the dangling delete files (removed unless dry run).
        snapshot_id: the REPLACE snapshot committed, if any.
    """

    delete_files: int = 0
    dangling_position_deletes: int = 0
    dangling_equality_deletes: int = 0
    removed_paths: list[str] = field(default_factory=list)
    snapshot_id: int | None = None


@dataclass
class DataExpireResult(_Result):
    """What :func:`~airflow_provider_amoro.maintenance.expire_data` did.

    Attributes:
        level: ``partition`` or ``file``.
        expire_field: the expiry field.
        cutoff: the expiry point as ISO-8601 text (UTC); values older than it expire.
        expired_data_files / expired_records / expired_bytes: data files dropped.
        expired_delete_files: delete files dropped with them (they applied to nothing else).
        expired_partitions: partitions dropped (partition level), as ``field=value`` paths.
        snapshot_id: the DELETE snapshot committed, if any.
    """

    level: str = ""
    expire_field: str = ""
    cutoff: str | None = None
    expired_data_files: int = 0
    expired_records: int = 0
    expired_bytes: int = 0
    expired_delete_files: int = 0
    expired_partitions: list[str] = field(default_factory=list)
    snapshot_id: int | None = None


@dataclass
class TagResult(_Result):
    """What :func:`~airflow_provider_amoro.maintenance.create_auto_tags` did.

    Attributes:
        tag_name: the tag for the latest period boundary.
        snapshot_id: the snapshot it points to (None when no snapshot qualifies).
        created: True when the tag was created now; False when it existed or no snapshot qualifies.
        reason: why nothing was created, when nothing was.
    """

    tag_name: str | None = None
    snapshot_id: int | None = None
    created: bool = False
    reason: str | None = None
