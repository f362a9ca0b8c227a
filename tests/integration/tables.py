"""Partitioned small-file tables for the integration tests: one rewrite task per partition."""

from __future__ import annotations

from typing import Any

PARTITIONS = 6
FILES_PER_PARTITION = 3
ROWS_PER_FILE = 200


def partitioned_small_file_table(
    catalog: Any,
    identifier: str,
    *,
    partitions: int = PARTITIONS,
    files_per_partition: int = FILES_PER_PARTITION,
    quota: str = "0.5",
) -> Any:
    """Create ``identifier`` partitioned by ``p`` with small files in every partition.

    Each append writes one file per partition, so every partition holds ``files_per_partition``
    fragments and the plan has one task per partition (``minor.trigger.file-count`` = 2).
    """
    import pyarrow as pa
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import LongType, NestedField, StringType

    namespace = identifier.rpartition(".")[0]
    if (namespace,) not in [tuple(n) for n in catalog.list_namespaces()]:
        catalog.create_namespace(namespace)
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "p", LongType(), required=False),
        NestedField(3, "v", StringType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="p"))
    table = catalog.create_table(
        identifier,
        schema=schema,
        partition_spec=spec,
        properties={
            "self-optimizing.target-size": str(1024 * 1024),
            "self-optimizing.max-task-size-bytes": str(1024 * 1024),
            "self-optimizing.minor.trigger.file-count": "2",
            "self-optimizing.quota": quota,
            "self-optimizing.min-plan-interval": "0",  # the watcher test plans twice within a minute
        },
    )
    arrow_schema = pa.schema([("id", pa.int64()), ("p", pa.int64()), ("v", pa.string())])
    next_id = 0
    for _ in range(files_per_partition):
        ids = list(range(next_id, next_id + partitions * ROWS_PER_FILE))
        next_id += len(ids)
        table.append(
            pa.table(
                {"id": ids, "p": [i % partitions for i in ids], "v": [f"row-{i}" for i in ids]},
                schema=arrow_schema,
            )
        )
    return table


def optimize_snapshots(table: Any) -> list[int]:
    """Ids of the table's snapshots committed by the optimizer (``snapshot-producer=OPTIMIZE``)."""
    return [
        s.snapshot_id
        for s in table.snapshots()
        if s.summary is not None and s.summary.get("snapshot-producer") == "OPTIMIZE"
    ]
