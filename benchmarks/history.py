"""Build Iceberg and Delta tables with a long commit history fast, as streaming writers leave them.

A streaming writer commits one batch at a time: on Iceberg every commit is a fast append that adds
one manifest and never merges (pyiceberg's ``append``; Flink's default), on Delta one ``add`` action
per commit with a checkpoint every 100 versions. Building 5,000 such commits through pyiceberg takes
hours (every append re-copies the whole metadata), so :func:`build_iceberg` writes the very same
metadata directly: one manifest per commit with the commit's snapshot id and sequence number, and a
manifest list (all manifests of the history, newest first) for each retained snapshot. Snapshots
older than ``keep_snapshots`` are absent, as after snapshot expiration (Amoro expires by
``snapshot.keep.duration``, 12 hours by default); their manifests stay in the head, as they do on a
real table. :func:`build_delta` writes the Delta log the same way (one JSON commit per batch) and
lets delta-rs write the checkpoint its writers would have written.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MINUTE_MS = 60_000


@dataclass
class Commit:
    """The files one commit adds."""

    data: list[Any] = field(default_factory=list)
    deletes: list[Any] = field(default_factory=list)


def build_iceberg(
    catalog: Any,
    ident: str,
    location: str,
    schema: Any,
    spec: Any,
    commits: Sequence[Commit] | Callable[[int, Any], Commit],
    n_commits: int,
    *,
    keep_snapshots: int = 100,
    properties: dict[str, str] | None = None,
) -> str:
    """Write an Iceberg v2 table of ``n_commits`` append commits and register it; returns its metadata path.

    ``commits`` is a list or a function ``(i, table_metadata) -> Commit`` (to build files lazily,
    with the metadata's field ids). Added entries inherit their sequence numbers from the manifest
    (as fast appends write them); one manifest per content kind per commit.
    """
    from pyiceberg.io.pyarrow import PyArrowFileIO
    from pyiceberg.manifest import (
        ManifestContent,
        ManifestEntry,
        ManifestEntryStatus,
        write_manifest,
        write_manifest_list,
    )
    from pyiceberg.serializers import ToOutputFile
    from pyiceberg.table.metadata import new_table_metadata
    from pyiceberg.table.refs import SnapshotRef, SnapshotRefType
    from pyiceberg.table.snapshots import (
        Operation,
        Snapshot,
        SnapshotLogEntry,
        SnapshotSummaryCollector,
        Summary,
        update_snapshot_summaries,
    )
    from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

    from airflow_provider_amoro.optimizing.delete_files import DeleteManifestWriterV2

    io = PyArrowFileIO()
    props = {"format-version": "2", **(properties or {})}
    md = new_table_metadata(schema, spec, UNSORTED_SORT_ORDER, location, props)
    schema, spec = md.schema(), md.spec()
    meta_dir = f"{location}/metadata"
    Path(meta_dir.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    start_ms = int(time.time() * 1000) - n_commits * MINUTE_MS
    manifests: list[Any] = []
    snapshots: list[Any] = []
    log: list[Any] = []
    previous: Summary | None = None
    base_id = 10**15 + int(uuid.uuid4().int % 10**12)
    first_kept = max(0, n_commits - keep_snapshots)
    for i in range(n_commits):
        commit = commits(i, md) if callable(commits) else commits[i]
        sid, seq = base_id + i, i + 1
        new = []
        for kind, files in ((ManifestContent.DATA, commit.data), (ManifestContent.DELETES, commit.deletes)):
            if not files:
                continue
            out = io.new_output(f"{meta_dir}/{uuid.uuid4()}-m0.avro")
            writer = (
                write_manifest(
                    format_version=2,
                    spec=spec,
                    schema=schema,
                    output_file=out,
                    snapshot_id=sid,
                    avro_compression="zstandard",
                )
                if kind == ManifestContent.DATA
                else DeleteManifestWriterV2(spec, schema, out, sid, "zstandard")
            )
            with writer:
                for df in files:
                    writer.add_entry(
                        ManifestEntry.from_args(
                            status=ManifestEntryStatus.ADDED, snapshot_id=sid, data_file=df
                        )
                    )
            mf = writer.to_manifest_file()
            mf.sequence_number = seq  # what the manifest list writer assigns at commit
            mf.min_sequence_number = seq
            new.append(mf)
        manifests = new + manifests
        ssc = SnapshotSummaryCollector()
        for df in [*commit.data, *commit.deletes]:
            ssc.add_file(df, schema=schema, partition_spec=spec)
        previous = update_snapshot_summaries(
            Summary(operation=Operation.APPEND, **ssc.build()), previous_summary=previous
        )
        if i < first_kept:
            continue
        ts = start_ms + i * MINUTE_MS
        list_path = f"{meta_dir}/snap-{sid}-0-{uuid.uuid4()}.avro"
        with write_manifest_list(
            format_version=2,
            output_file=io.new_output(list_path),
            snapshot_id=sid,
            parent_snapshot_id=sid - 1 if i > 0 else None,
            sequence_number=seq,
            avro_compression="zstandard",
        ) as lw:
            lw.add_manifests(manifests)
        snapshots.append(
            Snapshot.model_validate(
                {
                    "snapshot-id": sid,
                    "parent-snapshot-id": sid - 1 if i > 0 else None,
                    "sequence-number": seq,
                    "timestamp-ms": ts,
                    "manifest-list": list_path,
                    "summary": previous,
                    "schema-id": md.current_schema_id,
                }
            )
        )
        log.append(SnapshotLogEntry.model_validate({"snapshot-id": sid, "timestamp-ms": ts}))
    head = snapshots[-1]
    md = md.model_copy(
        update={
            "snapshots": snapshots,
            "snapshot_log": log,
            "current_snapshot_id": head.snapshot_id,
            "last_sequence_number": n_commits,
            "last_updated_ms": head.timestamp_ms,
            "refs": {
                "main": SnapshotRef(snapshot_id=head.snapshot_id, snapshot_ref_type=SnapshotRefType.BRANCH)
            },
        }
    )
    path = f"{meta_dir}/00000-{uuid.uuid4()}.metadata.json"
    ToOutputFile.table_metadata(md, io.new_output(path))
    catalog.register_table(ident, path)
    return path


_DELTA_TYPES = {
    "int64": "long",
    "int32": "integer",
    "string": "string",
    "large_string": "string",
    "double": "double",
}


def build_delta(path: Path, versions: Sequence[Sequence[tuple[str, int, int]]], arrow_schema: Any) -> None:
    """A Delta table at ``path`` whose version ``i`` adds ``versions[i]`` (relative path, bytes, rows).

    The data files must already be in ``path``. One JSON commit per version, then the checkpoint
    that delta-rs writers leave every 100 versions (only the latest matters to a reader).
    """
    from deltalake import DeltaTable

    log = path / "_delta_log"
    log.mkdir(parents=True, exist_ok=True)
    start_ms = int(time.time() * 1000) - len(versions) * MINUTE_MS
    fields = [
        {"name": f.name, "type": _DELTA_TYPES[str(f.type)], "nullable": True, "metadata": {}}
        for f in arrow_schema
    ]
    for i, files in enumerate(versions):
        ts = start_ms + i * MINUTE_MS
        actions: list[dict[str, Any]] = [
            {"commitInfo": {"timestamp": ts, "operation": "WRITE", "operationParameters": {"mode": "Append"}}}
        ]
        if i == 0:
            actions += [
                {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}},
                {
                    "metaData": {
                        "id": str(uuid.uuid4()),
                        "format": {"provider": "parquet", "options": {}},
                        "schemaString": json.dumps({"type": "struct", "fields": fields}),
                        "partitionColumns": [],
                        "configuration": {},
                        "createdTime": ts,
                    }
                },
            ]
        for rel, size, rows in files:
            add = {
                "path": rel,
                "partitionValues": {},
                "size": size,
                "modificationTime": ts,
                "dataChange": True,
                "stats": json.dumps({"numRecords": rows}),
            }
            actions.append({"add": add})
        (log / f"{i:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")
    if len(versions) >= 100:
        DeltaTable(str(path)).create_checkpoint()


def copy_delta(src: Path, dst: Path) -> None:
    """A fresh copy of a Delta table: data files hard-linked, the log copied."""
    import shutil

    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for entry in os.scandir(src):
        if entry.is_file():
            os.link(entry.path, dst / entry.name)
    shutil.copytree(src / "_delta_log", dst / "_delta_log")
