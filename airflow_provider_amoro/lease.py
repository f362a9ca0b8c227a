"""A lease per table, so that only one Airflow deployment optimizes and maintains a table.

Two deployments pointed at one catalog would otherwise both optimize and expire the same tables,
and one's snapshot expiry could delete files the other is reading. The lease is two table
properties, written through the catalog's own commit, which is atomic (a commit based on stale
metadata fails with ``CommitFailedException``):

``amoro.lease.owner``          the deployment that holds the table (``deployment`` in the YAML)
``amoro.lease.expires-at-ms``  until when (epoch ms); renewed when less than half is left

:func:`acquire` takes a free or expired lease, renews its own, and raises :class:`LeaseHeld`
naming the owner when another deployment holds it. A property change makes no snapshot, so the
table-change watchers do not fire on it. This module imports no Airflow.
"""

from __future__ import annotations

import time
from typing import Any

LEASE_OWNER = "amoro.lease.owner"
LEASE_EXPIRES = "amoro.lease.expires-at-ms"
DEFAULT_TTL_MS = 3_600_000


class LeaseHeld(Exception):
    """Another deployment holds the table's lease.

    Attributes:
        owner: the deployment holding it.
        expires_at_ms: until when.
    """

    def __init__(self, table: str, owner: str, expires_at_ms: int) -> None:
        self.owner = owner
        self.expires_at_ms = expires_at_ms
        left = max(0, expires_at_ms - int(time.time() * 1000)) // 1000
        super().__init__(f"{table} is managed by deployment {owner!r} (its lease runs {left} s more)")


def lease_of(table: Any) -> tuple[str | None, int]:
    """``(owner, expires_at_ms)`` of the table's lease (``(None, 0)`` when none)."""
    props = table.properties
    owner = props.get(LEASE_OWNER) or None
    try:
        expires = int(props.get(LEASE_EXPIRES) or 0)
    except ValueError:
        expires = 0
    return owner, expires


def acquire(table: Any, owner: str, *, ttl_ms: int = DEFAULT_TTL_MS, now_ms: int | None = None) -> Any:
    """Hold the table's lease for ``owner``; return the (possibly refreshed) table.

    Raises:
        LeaseHeld: another owner's lease has not expired, or another deployment took the lease
            between our read and our commit.
    """
    from pyiceberg.exceptions import CommitFailedException

    now = int(time.time() * 1000) if now_ms is None else now_ms
    current, expires = lease_of(table)
    name = ".".join(table.name()) if hasattr(table, "name") else str(table)
    if current and current != owner and expires > now:
        raise LeaseHeld(name, current, expires)
    if current == owner and expires - now > ttl_ms // 2:
        return table  # ours, with enough time left: no commit
    try:
        with table.transaction() as tx:
            tx.set_properties({LEASE_OWNER: owner, LEASE_EXPIRES: str(now + ttl_ms)})
    except CommitFailedException:
        table.refresh()
        current, expires = lease_of(table)
        if current != owner:
            raise LeaseHeld(name, current or "?", expires) from None
    return table
