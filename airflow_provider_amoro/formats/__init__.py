"""One seam per table format: what the product asks of a managed table.

``open_table(loaded)`` wraps a table loaded from a catalog in its format's :class:`TableFormat`;
the rest of the product (DAG factory, sensors, triggers, runtime, UI) talks to that protocol.
Iceberg is implemented; Mixed-Iceberg, Paimon and Hudi plug in here.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_amoro.formats.base import (
    Capabilities,
    Column,
    FileKind,
    FormatName,
    SnapshotRecord,
    TableFile,
    TableFormat,
    TableTotals,
)
from airflow_provider_amoro.formats.iceberg import IcebergTable

__all__ = [
    "Capabilities",
    "Column",
    "FileKind",
    "FormatName",
    "IcebergTable",
    "SnapshotRecord",
    "TableFile",
    "TableFormat",
    "TableTotals",
    "open_table",
]


def open_table(table: Any) -> TableFormat:
    """The :class:`TableFormat` of a loaded table.

    Args:
        table: a table as a catalog returns it (today: a pyiceberg ``Table``).

    Raises:
        TypeError: the object is no table of a known format.
    """
    from pyiceberg.table import Table

    if isinstance(table, Table):
        return IcebergTable(table)
    raise TypeError(f"not a table of a supported format: {type(table).__name__}")
