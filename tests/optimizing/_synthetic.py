"""Commit many synthetic data files (metadata only, no Parquet written) to test planning at scale."""

from __future__ import annotations

from typing import Any

from pyiceberg.conversions import to_bytes
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.table import Table
from pyiceberg.typedef import Record
from pyiceberg.types import LongType


def synthetic_data_file(table: Table, i: int, partition: Record, size: int) -> DataFile:
    """A data file entry with realistic statistics; the file itself does not exist."""
    df = DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=f"{table.location()}/data/synthetic/{i:09d}-0a1b2c3d-4e5f-6789-abcd-ef0123456789.parquet",
        file_format=FileFormat.PARQUET,
        partition=partition,
        record_count=1000,
        file_size_in_bytes=size,
        column_sizes={1: 100, 2: 200, 3: 50, 4: 300},
        value_counts={1: 1000, 2: 1000, 3: 1000, 4: 1000},
        null_value_counts={1: 0, 2: 0, 3: 0, 4: 0},
        lower_bounds={1: to_bytes(LongType(), i * 1000), 2: b"a", 4: b"0000"},
        upper_bounds={1: to_bytes(LongType(), i * 1000 + 999), 2: b"z", 4: b"9999"},
        split_offsets=[4],
    )
    df.spec_id = table.spec().spec_id
    return df


def add_synthetic_files(
    table: Table, count: int, *, per_commit: int = 10_000, partitions: int = 10, size: int = 100_000
) -> Any:
    """Fast-append ``count`` synthetic data files, ``per_commit`` per snapshot (one manifest each).

    The table's current spec must be unpartitioned or have one string identity field.
    """
    spec = table.spec()
    done = 0
    while done < count:
        with table.transaction() as tx, tx.update_snapshot().fast_append() as append:
            for i in range(done, min(count, done + per_commit)):
                part = Record() if spec.is_unpartitioned() else Record(f"p{i % partitions:03d}")
                append.append_data_file(synthetic_data_file(table, i, part, size + i % 1000))
        done += per_commit
    return table
