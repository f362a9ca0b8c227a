"""A position-delete file counts only against data files its file_path bounds admit (issue #10 item 6)."""

from __future__ import annotations

import pyarrow as pa
from builders import ID_V_SCHEMA
from pyiceberg.catalog import Catalog

from airflow_provider_amoro.optimizing import evaluate
from airflow_provider_amoro.optimizing.config import OptimizingConfig
from airflow_provider_amoro.optimizing.scan import DeleteFileIndex, live_files
from airflow_provider_amoro.testing.deletes import add_position_deletes
from airflow_provider_amoro.testing.reader import canonical_rows, read_table


def test_a_delete_file_does_not_mark_files_outside_its_bounds(sqlite_catalog: Catalog) -> None:
    sqlite_catalog.create_namespace("db")
    # files of ~1.3 KB against a 1 KB target: every file is a target-size segment
    table = sqlite_catalog.create_table(
        "db.t",
        schema=ID_V_SCHEMA,
        properties={"self-optimizing.target-size": "1024", "self-optimizing.max-task-size-bytes": "1024"},
    )
    for b in range(3):
        ids = list(range(b * 20, (b + 1) * 20))
        table.append(pa.table({"id": ids, "v": [f"value-{i:05d}" * 3 for i in ids]}, schema=ID_V_SCHEMA))
    table.refresh()
    first, second, third = sorted(f.path for f in live_files(table).data_files)
    # one delete file for the two files with the lowest paths: bounds [first, second]
    add_position_deletes(table, {first: [0, 1, 2], second: [0, 1, 2]})
    table.refresh()
    expected = canonical_rows(read_table(table))

    files = live_files(table)
    (delete,) = files.delete_files
    assert delete.referenced_data_file is None
    assert (delete.path_lower, delete.path_upper) == (first, second)
    index = DeleteFileIndex(files.delete_files)
    by_path = {f.path: f for f in files.data_files}
    assert index.summary(by_path[first]) == (1, 6, 0)
    assert index.summary(by_path[second]) == (1, 6, 0)
    assert index.summary(by_path[third]) == (0, 0, 0)  # outside the bounds
    assert [d.path for d in index.for_data_file(by_path[third])] == []
    assert [d.path for d in index.for_data_files([by_path[third], by_path[first]])] == [delete.path]

    config = OptimizingConfig.from_properties(table.properties)
    assert min(f.size_bytes for f in files.data_files) > config.min_target_size
    (partition,) = evaluate(table, config=config).partitions
    # 6 deleted records > 10% of 20: the two files the deletes reference are rewritten, not the third
    assert partition.rewrite_segment_files == 2
    assert canonical_rows(read_table(table)) == expected
