"""Iceberg format v3 tables are refused at evaluation, with the reason, before anything is planned."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from builders import ID_V_SCHEMA
from pyiceberg.catalog import Catalog

from airflow_provider_amoro.optimizing import evaluate
from airflow_provider_amoro.optimizing import plan as make_plan


def v3_small_files(catalog: Catalog, identifier: str = "db.v3") -> Any:
    """A format v3 table with 13 small files (minor optimizing would be due on v1/v2).

    pyiceberg 0.12 cannot write v3 metadata: a v2 table's metadata is read as v3, as a v3 writer
    leaves it.
    """
    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadataV3

    namespace = identifier.rpartition(".")[0]
    catalog.create_namespace_if_not_exists(namespace)
    v2 = catalog.create_table(identifier, schema=ID_V_SCHEMA)
    for i in range(13):
        v2.append(pa.table({"id": [i], "v": [f"r{i}"]}, schema=ID_V_SCHEMA))
    assert evaluate(v2).kind == "minor"
    metadata = TableMetadataV3.model_validate(
        {**v2.metadata.model_dump(), "format-version": 3, "next-row-id": 0}
    )
    return Table(v2.name(), metadata, v2.metadata_location, v2.io, catalog)


def test_v3_is_refused_at_evaluation_with_the_reason(sqlite_catalog: Catalog) -> None:
    table = v3_small_files(sqlite_catalog)
    assert table.metadata.format_version == 3

    evaluation = evaluate(table)

    assert evaluation.kind is None and not evaluation.partitions
    assert evaluation.unsupported is not None and "format v3" in evaluation.unsupported
    assert evaluation.reasons == [evaluation.unsupported]
    assert evaluation.to_dict()["unsupported"] == evaluation.unsupported
    assert evaluation.snapshot_id == table.current_snapshot().snapshot_id
    # nothing is planned, not even a forced kind
    assert make_plan(table).tasks == []
    assert make_plan(table, "full").tasks == []
