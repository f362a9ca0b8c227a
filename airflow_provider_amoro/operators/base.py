"""``AmoroTableOperator``: the base of every operator that works on one Iceberg table.

It gives subclasses, with no table logic of its own:

- keyword-only ``table`` (``namespace.table``) and ``amoro_conn_id``, both templated;
- :meth:`AmoroTableOperator.load_table` through
  :class:`~airflow_provider_amoro.hooks.catalog.AmoroCatalogHook`;
- the table's Asset (``iceberg://<conn_id>/<namespace>/<table>``) declared on the task: as an
  **outlet** when the operator changes the table (``changes_table = True``), so every successful run
  emits one asset event, otherwise as an **inlet** (read-only operators must not emit events: they
  would trigger the table's consumers);
- :meth:`AmoroTableOperator.emit_table_event` to put the operation's metrics into that event's ``extra``;
- :meth:`AmoroTableOperator.state` — a :class:`~airflow_provider_amoro.runtime.recorder.TableStateRecorder`
  writing the table's runtime state to the asset state store (Task SDK only).

Subclass recipe (maintenance operators)::

    class ExpireSnapshotsOperator(AmoroTableOperator):
        changes_table = True

        def execute(self, context):
            table = self.load_table()
            result = expire_snapshots(table, ...)  # engine call, returns metrics
            self.emit_table_event(context, operation="expire_snapshots", metrics=result.to_dict())
            self.state(context).record_maintenance("expire_snapshots", result.to_dict())
            return result.to_dict()

A templated ``table`` (``"{{ params.table }}"``) cannot be declared at parse time; such tasks address
the asset by URI at run time (state recording works when the asset exists in Airflow; asset events
need a literal table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_amoro.assets import table_asset, table_asset_uri
from airflow_provider_amoro.properties import DEFAULT_CONN_ID
from airflow_provider_amoro.runtime.recorder import TableStateRecorder

if TYPE_CHECKING:
    from airflow.sdk import Asset
    from pyiceberg.table import Table

    from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook


PRODUCER_KEY = "producer"
"""Key of the asset-event ``extra`` naming who produced the change."""

PRODUCER_OPTIMIZER = "amoro-optimizer"
"""``extra[producer]`` of events emitted by optimizing commits (triggers/sensors can ignore them)."""

PRODUCER_MAINTENANCE = "amoro-maintenance"
"""``extra[producer]`` of events emitted by maintenance actions."""


def _is_literal(value: str) -> bool:
    return "{{" not in value and "{%" not in value


def declare_table_asset(task: Any, conn_id: str, table: str, *, outlet: bool) -> None:
    """Add the table's asset to ``task.outlets`` (``outlet=True``) or ``task.inlets``.

    Does nothing when ``table`` or ``conn_id`` is a template (the asset is unknown at parse time).
    """
    if not (_is_literal(table) and _is_literal(conn_id)):
        return
    asset = table_asset(conn_id, table)
    lineage = "outlets" if outlet else "inlets"
    current = list(getattr(task, lineage) or [])
    if asset not in current:
        setattr(task, lineage, [*current, asset])


class AmoroTableOperator(BaseOperator):
    """Base operator for one Iceberg table of an Amoro catalog connection.

    Args:
        table: table identifier, ``namespace.table`` (templated).
        amoro_conn_id: Airflow connection id of the catalog (templated).
        property_defaults: Amoro properties applied *under* the table's own (a property the table
            sets wins); the DAG factory passes its ``defaults.properties``. Resolved at run time, so
            the generated DAG does not depend on the table's properties.
        property_overrides: Amoro properties applied *over* the table's own (the DAG factory passes
            its configured overrides to every task of a table's DAG).
        lease_owner: this deployment's name when tables are leased (``deployment`` in the DAG
            factory YAML): :meth:`hold_lease` skips the task while another deployment holds the
            table (see :mod:`airflow_provider_amoro.lease`). None: no lease.
        **kwargs: passed to ``BaseOperator``.
    """

    template_fields: Sequence[str] = ("table", "amoro_conn_id")
    ui_color = "#d4ecf7"

    changes_table: bool = False
    """Whether the operator may commit to the table; if so, the table asset is an outlet."""

    event_producer: str = PRODUCER_MAINTENANCE
    """Default ``extra[producer]`` of the asset events this operator emits."""

    def __init__(
        self,
        *,
        table: str,
        amoro_conn_id: str = DEFAULT_CONN_ID,
        property_defaults: Mapping[str, str] | None = None,
        property_overrides: Mapping[str, str] | None = None,
        lease_owner: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lease_owner = lease_owner
        self.table = table
        self.amoro_conn_id = amoro_conn_id
        self.property_defaults = dict(property_defaults or {})
        self.property_overrides = dict(property_overrides or {})
        self._hook: AmoroCatalogHook | None = None
        declare_table_asset(self, amoro_conn_id, table, outlet=self.changes_table)

    # ---- table ----------------------------------------------------------------------------------

    @property
    def asset_uri(self) -> str:
        """The table asset's URI (after templates are rendered)."""
        return table_asset_uri(self.amoro_conn_id, self.table)

    @property
    def asset(self) -> Asset:
        """The table asset (after templates are rendered)."""
        return table_asset(self.amoro_conn_id, self.table)

    @property
    def hook(self) -> AmoroCatalogHook:
        """The catalog hook for ``amoro_conn_id`` (one per task run)."""
        if self._hook is None:
            from airflow_provider_amoro.hooks.catalog import AmoroCatalogHook

            self._hook = AmoroCatalogHook(amoro_conn_id=self.amoro_conn_id)
        return self._hook

    def load_table(self) -> Table:
        """Load the table (fresh metadata) through the hook."""
        return self.hook.load_table(self.table)

    def hold_lease(self, table: Table) -> Table:
        """Take or renew this deployment's lease on the table; skip the task when another holds it."""
        if not self.lease_owner:
            return table
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_provider_amoro.lease import LeaseHeld, acquire

        try:
            held: Table = acquire(table, self.lease_owner)
        except LeaseHeld as exc:
            raise AirflowSkipException(str(exc)) from None
        return held

    def layered_properties(
        self, table_properties: Mapping[str, str], overrides: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The properties to apply over the table's own: defaults it does not set, then ``overrides``."""
        defaults = {k: v for k, v in self.property_defaults.items() if k not in table_properties}
        return {**defaults, **(overrides or {})}

    # ---- events and state ---------------------------------------------------------------------

    def state(self, context: Mapping[str, Any]) -> TableStateRecorder:
        """The runtime-state recorder of this table for this task run."""
        recorder = getattr(self, "_recorder", None)
        if recorder is None or recorder.context is not context:
            recorder = TableStateRecorder(context, self.asset_uri)
            self._recorder = recorder
        return recorder

    def emit_table_event(
        self,
        context: Mapping[str, Any],
        *,
        operation: str,
        metrics: Mapping[str, Any] | None = None,
        snapshot_id: int | None = None,
        producer: str | None = None,
        changed: bool = True,
    ) -> dict[str, Any]:
        """Fill the ``extra`` of the table asset's event for this task run.

        Airflow emits one event per outlet when the task succeeds; this sets its ``extra`` to
        ``{"operation", "table", "conn_id", "producer", "snapshot_id", "changed", "metrics"}``.

        Args:
            context: the task's Airflow context.
            operation: what was done (``optimize``, ``expire_snapshots``, …).
            metrics: small JSON-safe metrics of the operation.
            snapshot_id: snapshot the operation committed, if any.
            producer: ``extra["producer"]``; defaults to :attr:`event_producer`.
            changed: whether the table changed at all.

        Returns:
            The ``extra`` dict.
        """
        extra: dict[str, Any] = {
            "operation": operation,
            "table": self.table,
            "conn_id": self.amoro_conn_id,
            PRODUCER_KEY: producer or self.event_producer,
            "snapshot_id": snapshot_id,
            "changed": changed,
            "metrics": dict(metrics or {}),
        }
        events = context.get("outlet_events")
        if events is None:
            self.log.warning("no outlet_events in context; asset event extra not set")
            return extra
        asset = self.asset
        if asset not in list(self.outlets or []):
            self.log.warning(
                "table asset %s is not an outlet of %s (templated table?); no event emitted",
                asset.uri,
                self.task_id,
            )
            return extra
        events[asset].extra = extra
        return extra
