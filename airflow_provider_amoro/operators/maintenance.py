"""Maintenance operators: thin wrappers over :mod:`airflow_provider_amoro.maintenance`.

Each operator loads the table through the ``amoro`` connection, runs one engine action with the
table's Amoro properties (keyword arguments override some of them), records the result as the
table's last run of that action in the runtime state, fills the table asset event's ``extra``
(producer ``amoro-maintenance``) when the action may change the table, and returns
``result.to_dict()`` (JSON-safe, pushed as XCom). The engine logs progress through the standard
``airflow_provider_amoro.maintenance.*`` loggers, which end up in the task log. ``dry_run=True``
(stored as ``dry_run_only``: ``BaseOperator.dry_run`` is a method) reports without changing anything.

=================================  ==========================  =====================
operator                           engine action               table asset
=================================  ==========================  =====================
:class:`ExpireSnapshotsOperator`   ``expire_snapshots``        outlet (metadata change)
:class:`CleanOrphanFilesOperator`  ``clean_orphan_files``      inlet (no commit)
:class:`CleanDanglingDeleteFilesOperator`  ``clean_dangling_delete_files``  outlet
:class:`ExpireDataOperator`        ``expire_data``             outlet
:class:`CreateTagsOperator`        ``create_auto_tags``        outlet
=================================  ==========================  =====================

``ExpireSnapshotsOperator`` never expires the base snapshot of a running optimizing process, nor
anything newer: pass ``protected_snapshot_id`` explicitly, or leave it None and the operator takes
the base snapshot of the process the table's runtime state shows as ``RUNNING``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_amoro.operators.base import AmoroTableOperator

if TYPE_CHECKING:
    from pyiceberg.table import Table

__all__ = [
    "CleanDanglingDeleteFilesOperator",
    "CleanOrphanFilesOperator",
    "CreateTagsOperator",
    "ExpireDataOperator",
    "ExpireSnapshotsOperator",
]


class _MaintenanceOperator(AmoroTableOperator):
    """Shared ``execute``: load, run the action, record, emit, return the metrics.

    Takes :class:`AmoroTableOperator`'s arguments (``property_overrides`` among them).
    """

    template_fields: Sequence[str] = ("table", "amoro_conn_id")
    action: str = ""
    changes_table = True

    def run_action(self, table: Table, context: Mapping[str, Any]) -> Any:
        """Run the engine action; returns its result object."""
        raise NotImplementedError

    def execute(self, context: Any) -> dict[str, Any]:
        """Run the maintenance action and return its JSON-safe metrics."""
        table = self.load_table()
        result = self.run_action(table, context)
        metrics: dict[str, Any] = result.to_dict()
        snapshot_id = metrics.get("snapshot_id")
        changed = not metrics.get("skipped") and not metrics.get("dry_run") and _changed(metrics)
        if self.changes_table:
            self.emit_table_event(
                context, operation=self.action, metrics=metrics, snapshot_id=snapshot_id, changed=changed
            )
        try:
            self.state(context).record_maintenance(self.action, metrics)
        except Exception as exc:  # noqa: BLE001 - recording is informative; the action succeeded
            self.log.warning("could not record %s in the runtime state: %s", self.action, exc)
        self.log.info("%s on %s: %s", self.action, self.table, metrics)
        return metrics


class _DryRunOperator(_MaintenanceOperator):
    """A maintenance operator with a ``dry_run`` option (kept as ``dry_run_only``)."""

    def __init__(self, *, dry_run: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dry_run_only = dry_run


def _changed(metrics: Mapping[str, Any]) -> bool:
    keys = ("expired_snapshot_ids", "removed_refs", "removed_paths", "expired_data_files", "created")
    return any(bool(metrics.get(k)) for k in keys)


class ExpireSnapshotsOperator(_DryRunOperator):
    """Expire snapshots, delete the files only they reached (``snapshot.keep.*``, ``table-expire.enabled``).

    Args:
        table: ``namespace.table`` (templated).
        amoro_conn_id: the catalog connection (templated).
        keep_min_count: overrides ``snapshot.keep.min-count``.
        keep_duration_ms: overrides ``snapshot.keep.duration``.
        protected_snapshot_id: base snapshot of a running optimizing process; None: read it from the
            table's runtime state.
        running_process_max_age_ms: a process recorded as RUNNING but planned longer ago than this is
            taken as dead (a lost worker) and not protected: expiry must not stall forever. Safe
            either way: a commit whose base snapshot expired fails validation and is planned again.
        dry_run: report without committing or deleting.
        **kwargs: passed to :class:`AmoroTableOperator`.
    """

    action = "expire_snapshots"

    def __init__(
        self,
        *,
        keep_min_count: int | None = None,
        keep_duration_ms: int | None = None,
        protected_snapshot_id: int | None = None,
        running_process_max_age_ms: int = 86_400_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.keep_min_count = keep_min_count
        self.keep_duration_ms = keep_duration_ms
        self.protected_snapshot_id = protected_snapshot_id
        self.running_process_max_age_ms = running_process_max_age_ms

    def _running_base(self, context: Mapping[str, Any]) -> int | None:
        try:
            process = self.state(context).current_process()
        except Exception as exc:  # noqa: BLE001 - no state store (e.g. outside a DAG run)
            self.log.info("no runtime state to read the running optimizing process from: %s", exc)
            return None
        if process is None or process.status != "RUNNING" or process.base_snapshot_id is None:
            return None
        age_ms = int(time.time() * 1000) - int(process.plan_time_ms or 0)
        if process.plan_time_ms and age_ms > self.running_process_max_age_ms:
            self.log.warning(
                "process %s is recorded RUNNING but was planned %d s ago: not protecting its base",
                process.process_id,
                age_ms // 1000,
            )
            return None
        self.log.info("protecting base snapshot %s of running process", process.base_snapshot_id)
        return process.base_snapshot_id

    def run_action(self, table: Table, context: Mapping[str, Any]) -> Any:
        """Expire snapshots."""
        from airflow_provider_amoro.maintenance import expire_snapshots

        protected = self.protected_snapshot_id
        if protected is None:
            protected = self._running_base(context)
        return expire_snapshots(
            table,
            keep_min_count=self.keep_min_count,
            keep_duration_ms=self.keep_duration_ms,
            protected_snapshot_id=protected,
            dry_run=self.dry_run_only,
            properties=self.layered_properties(table.properties, self.property_overrides),
        )


class CleanOrphanFilesOperator(_DryRunOperator):
    """Delete unreferenced files under the table's ``data/`` and ``metadata/`` folders.

    Args:
        table: ``namespace.table`` (templated).
        amoro_conn_id: the catalog connection (templated).
        min_existing_time_minutes: overrides ``clean-orphan-file.min-existing-time-minutes``.
        dry_run: report without deleting.
        force: run even when the table's ``clean-orphan-file.enabled`` is false (Amoro's default).
        **kwargs: passed to :class:`AmoroTableOperator`.
    """

    action = "clean_orphan_files"
    changes_table = False

    def __init__(
        self,
        *,
        min_existing_time_minutes: int | None = None,
        force: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.min_existing_time_minutes = min_existing_time_minutes
        self.force = force

    def run_action(self, table: Table, context: Mapping[str, Any]) -> Any:
        """Clean orphan files."""
        from airflow_provider_amoro.maintenance import clean_orphan_files

        return clean_orphan_files(
            table,
            min_existing_time_minutes=self.min_existing_time_minutes,
            dry_run=self.dry_run_only,
            force=self.force,
            properties=self.layered_properties(table.properties, self.property_overrides),
        )


class CleanDanglingDeleteFilesOperator(_DryRunOperator):
    """Remove delete files that apply to no live data file (one REPLACE commit).

    Args:
        table: ``namespace.table`` (templated).
        amoro_conn_id: the catalog connection (templated).
        dry_run: report without committing.
        **kwargs: passed to :class:`AmoroTableOperator`.
    """

    action = "clean_dangling_delete_files"

    def run_action(self, table: Table, context: Mapping[str, Any]) -> Any:
        """Clean dangling delete files."""
        from airflow_provider_amoro.maintenance import clean_dangling_delete_files

        return clean_dangling_delete_files(
            table,
            dry_run=self.dry_run_only,
            properties=self.layered_properties(table.properties, self.property_overrides),
        )


class ExpireDataOperator(_DryRunOperator):
    """Drop data older than ``data-expire.retention-time`` (whole files or partitions).

    Args:
        table: ``namespace.table`` (templated).
        amoro_conn_id: the catalog connection (templated).
        dry_run: report without committing.
        **kwargs: passed to :class:`AmoroTableOperator`.
    """

    action = "expire_data"

    def run_action(self, table: Table, context: Mapping[str, Any]) -> Any:
        """Expire data."""
        from airflow_provider_amoro.maintenance import expire_data

        return expire_data(
            table,
            dry_run=self.dry_run_only,
            properties=self.layered_properties(table.properties, self.property_overrides),
        )


class CreateTagsOperator(_MaintenanceOperator):
    """Create the ``tag.auto-create.*`` tag of the period that closed last, if due and missing.

    Args:
        table: ``namespace.table`` (templated).
        amoro_conn_id: the catalog connection (templated).
        **kwargs: passed to :class:`AmoroTableOperator`.
    """

    action = "create_tags"

    def run_action(self, table: Table, context: Mapping[str, Any]) -> Any:
        """Create the auto tag."""
        from airflow_provider_amoro.maintenance import create_auto_tags

        return create_auto_tags(
            table, properties=self.layered_properties(table.properties, self.property_overrides)
        )
