"""The one place that touches pyiceberg's private API.

pyiceberg is pinned exactly (0.12); what the provider needs beyond its public API is named here, so
an upgrade has one module to check. ``tests/test_iceberg_compat.py`` fails when another module of the
package imports a private pyiceberg name or calls a private pyiceberg method.

What is used, and why:

- :func:`commit_updates`: ``Table._do_commit``, the catalog commit of ready-made updates and
  requirements (``catalog.commit_table``, then the table object takes the new metadata, checks the
  table UUID and honours ``write.metadata.delete-after-commit.enabled``). Committing this way skips
  pyiceberg's ``Transaction``, which deep-copies the whole table metadata (every snapshot) on each
  access and each update; the optimizer builds its snapshot once instead.
- :func:`apply_updates`: ``Transaction._apply``, to stage updates built by hand in a transaction.
- :data:`InclusiveMetricsEvaluator`: file pruning by column metrics (``self-optimizing.filter``).
- :func:`to_requested_schema`: projects a Parquet batch onto the table schema by field id
  (schema evolution, type promotion, missing columns).
- :func:`determine_partitions`: splits an Arrow table by partition values.
- :func:`get_parquet_writer_kwargs`: the Parquet writer options of the table properties
  (``write.parquet.*``), so outputs are encoded as pyiceberg writes them.
- :func:`pyarrow_schema_ensure_small_types`: position-delete schemas with 32-bit offsets.
- :func:`check_pyarrow_schema_compatible`, :func:`dataframe_to_data_files`: appends in test helpers.
- :data:`OverwriteFiles`, :data:`FastAppendFiles`, :data:`SnapshotProducer`: pyiceberg's snapshot
  producers, for the few writers that reuse them (data expiration, test helpers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyiceberg.expressions.visitors import _InclusiveMetricsEvaluator as InclusiveMetricsEvaluator
from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible as check_pyarrow_schema_compatible
from pyiceberg.io.pyarrow import _dataframe_to_data_files as dataframe_to_data_files
from pyiceberg.io.pyarrow import _determine_partitions as determine_partitions
from pyiceberg.io.pyarrow import _get_parquet_writer_kwargs as get_parquet_writer_kwargs
from pyiceberg.io.pyarrow import _pyarrow_schema_ensure_small_types as pyarrow_schema_ensure_small_types
from pyiceberg.io.pyarrow import _to_requested_schema as to_requested_schema
from pyiceberg.table.update.snapshot import _FastAppendFiles as FastAppendFiles
from pyiceberg.table.update.snapshot import _OverwriteFiles as OverwriteFiles
from pyiceberg.table.update.snapshot import _SnapshotProducer as SnapshotProducer

if TYPE_CHECKING:
    from pyiceberg.table import Table, Transaction
    from pyiceberg.table.update import TableRequirement, TableUpdate

__all__ = [
    "FastAppendFiles",
    "InclusiveMetricsEvaluator",
    "OverwriteFiles",
    "SnapshotProducer",
    "apply_updates",
    "check_pyarrow_schema_compatible",
    "commit_updates",
    "dataframe_to_data_files",
    "determine_partitions",
    "get_parquet_writer_kwargs",
    "pyarrow_schema_ensure_small_types",
    "table_of",
    "to_requested_schema",
]


def commit_updates(
    table: Table, updates: tuple[TableUpdate, ...], requirements: tuple[TableRequirement, ...]
) -> None:
    """Commit ``updates`` under ``requirements`` through the catalog; ``table`` takes the new metadata.

    Raises what the catalog raises: ``CommitFailedException`` when a requirement does not hold (a
    concurrent commit), ``CommitStateUnknownException`` when the outcome is unknown.
    """
    table._do_commit(updates=updates, requirements=requirements)


def apply_updates(
    tx: Transaction, updates: tuple[TableUpdate, ...], requirements: tuple[TableRequirement, ...]
) -> None:
    """Stage ``updates`` and ``requirements`` in the transaction ``tx`` (committed with it)."""
    tx._apply(updates, requirements)


def table_of(tx: Transaction) -> Table:
    """The table a transaction was opened on."""
    return tx._table
