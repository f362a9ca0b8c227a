"""The engine's data model: small, JSON-serialisable descriptions of files, tasks, plans and results.

Plans and task results travel between Airflow tasks as XCom, so they hold file metadata only
(paths, sizes, record counts, sequence numbers, spec ids, partition values), never rows.
:func:`datafile_to_dict` / :func:`datafile_from_dict` round-trip a pyiceberg ``DataFile`` (with its
column statistics) through JSON, so a file written by one worker can be committed by another.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.typedef import Record

# Re-exported: the engine imports the kind with its model (one definition, in properties).
from airflow_provider_amoro.io_counters import IO_COUNTER_NAMES as IO_COUNTER_NAMES
from airflow_provider_amoro.io_counters import IOCounters as IOCounters
from airflow_provider_amoro.properties import OptimizingKind as OptimizingKind

FileContent = Literal["data", "position_deletes", "equality_deletes"]

_CONTENT_NAMES: dict[DataFileContent, FileContent] = {
    DataFileContent.DATA: "data",
    DataFileContent.POSITION_DELETES: "position_deletes",
    DataFileContent.EQUALITY_DELETES: "equality_deletes",
}
_CONTENT_ENUMS: dict[str, DataFileContent] = {v: k for k, v in _CONTENT_NAMES.items()}


def content_name(content: DataFileContent) -> FileContent:
    """Map pyiceberg's ``DataFileContent`` to the plan's content name."""
    return _CONTENT_NAMES[content]


def content_enum(name: str) -> DataFileContent:
    """Map a plan content name back to pyiceberg's ``DataFileContent``."""
    return _CONTENT_ENUMS[name]


def encode_value(value: Any) -> Any:
    """Encode a partition or bound value as JSON-safe data (tagged dicts for non-JSON types)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    raise TypeError(f"cannot encode value of type {type(value).__name__}: {value!r}")


def decode_value(value: Any) -> Any:
    """Inverse of :func:`encode_value`."""
    if isinstance(value, dict) and len(value) == 1:
        ((tag, raw),) = value.items()
        if tag == "$bytes":
            return base64.b64decode(raw)
        if tag == "$decimal":
            return Decimal(raw)
        if tag == "$uuid":
            return uuid.UUID(raw)
        if tag == "$datetime":
            return dt.datetime.fromisoformat(raw)
        if tag == "$date":
            return dt.date.fromisoformat(raw)
        if tag == "$time":
            return dt.time.fromisoformat(raw)
    return value


def encode_partition(partition: Record | None) -> list[Any]:
    """A pyiceberg partition ``Record`` as a JSON-safe list of values in spec field order."""
    if partition is None:
        return []
    return [encode_value(partition[i]) for i in range(len(partition))]


def decode_partition(values: list[Any]) -> Record:
    """Inverse of :func:`encode_partition`."""
    return Record(*[decode_value(v) for v in values])


def _int_map(m: dict[int, int] | None) -> dict[str, int] | None:
    return None if m is None else {str(k): int(v) for k, v in m.items()}


def _bytes_map(m: dict[int, bytes] | None) -> dict[str, str] | None:
    return None if m is None else {str(k): base64.b64encode(v).decode("ascii") for k, v in m.items()}


def datafile_to_dict(df: DataFile) -> dict[str, Any]:
    """Serialise a pyiceberg ``DataFile`` (data or delete file) with its statistics to JSON-safe data."""
    return {
        "content": content_name(df.content),
        "file_path": df.file_path,
        "file_format": df.file_format.value
        if isinstance(df.file_format, FileFormat)
        else str(df.file_format),
        "partition": encode_partition(df.partition),
        "record_count": int(df.record_count),
        "file_size_in_bytes": int(df.file_size_in_bytes),
        "column_sizes": _int_map(df.column_sizes),
        "value_counts": _int_map(df.value_counts),
        "null_value_counts": _int_map(df.null_value_counts),
        "nan_value_counts": _int_map(df.nan_value_counts),
        "lower_bounds": _bytes_map(df.lower_bounds),
        "upper_bounds": _bytes_map(df.upper_bounds),
        "split_offsets": list(df.split_offsets) if df.split_offsets is not None else None,
        "equality_ids": list(df.equality_ids) if df.equality_ids is not None else None,
        "sort_order_id": df.sort_order_id,
        "spec_id": df.spec_id,
    }


def datafile_from_dict(d: dict[str, Any]) -> DataFile:
    """Rebuild a pyiceberg ``DataFile`` from :func:`datafile_to_dict` output.

    The object always uses pyiceberg's in-memory (v2) field layout, which its accessors and
    manifest writers expect for every table format version; the writer picks the on-disk layout.
    """

    def ints(m: dict[str, int] | None) -> dict[int, int] | None:
        return None if m is None else {int(k): int(v) for k, v in m.items()}

    def raw(m: dict[str, str] | None) -> dict[int, bytes] | None:
        return None if m is None else {int(k): base64.b64decode(v) for k, v in m.items()}

    df = DataFile.from_args(
        content=content_enum(d["content"]),
        file_path=d["file_path"],
        file_format=FileFormat(d["file_format"]),
        partition=decode_partition(d["partition"]),
        record_count=d["record_count"],
        file_size_in_bytes=d["file_size_in_bytes"],
        column_sizes=ints(d.get("column_sizes")),
        value_counts=ints(d.get("value_counts")),
        null_value_counts=ints(d.get("null_value_counts")),
        nan_value_counts=ints(d.get("nan_value_counts")),
        lower_bounds=raw(d.get("lower_bounds")),
        upper_bounds=raw(d.get("upper_bounds")),
        split_offsets=d.get("split_offsets"),
        equality_ids=d.get("equality_ids"),
        sort_order_id=d.get("sort_order_id"),
    )
    df.spec_id = int(d["spec_id"])
    return df


@dataclass(frozen=True)
class FileRef:
    """One live file of the table as the planner saw it (a data file or a delete file).

    Attributes:
        path: the file's full location (``file:///…`` or ``s3://…``).
        content: ``data``, ``position_deletes`` or ``equality_deletes``.
        size_bytes: file size in bytes.
        record_count: rows in the file (for delete files: delete records).
        spec_id: partition spec id the file was written with.
        partition: JSON-safe partition values in spec field order (see :func:`encode_partition`).
        data_sequence_number: the manifest entry's data sequence number.
        file_sequence_number: the manifest entry's file sequence number (None on v1 tables).
        equality_ids: field ids of an equality delete file, else None.
        file_format: ``PARQUET`` (only Parquet is rewritten).
        referenced_data_file: for a position delete file that deletes rows of exactly one data file
            (its ``referenced_data_file`` field, or equal lower/upper bounds of its ``file_path``
            column), that data file's path; else None.
        sort_order_id: the sort order the file's rows are sorted by (data files; None: unknown).
        path_lower, path_upper: for a position delete file, the lower and upper bounds of its
            ``file_path`` column (None: unknown); see :meth:`may_reference`.
    """

    path: str
    content: FileContent
    size_bytes: int
    record_count: int
    spec_id: int
    partition: list[Any]
    data_sequence_number: int
    file_sequence_number: int | None = None
    equality_ids: list[int] | None = None
    file_format: str = "PARQUET"
    referenced_data_file: str | None = None
    sort_order_id: int | None = None
    path_lower: str | None = None
    path_upper: str | None = None

    def may_reference(self, data_path: str) -> bool:
        """For a position-delete file: whether its ``file_path`` bounds (when known) admit ``data_path``.

        Iceberg's column bounds hold every value of the column (a truncated lower bound is a
        prefix, a truncated upper bound is rounded up), so a path outside them is surely not
        referenced. Without bounds, every path may be.
        """
        raw = data_path.encode("utf-8")
        if self.path_lower is not None and raw < self.path_lower.encode("utf-8"):
            return False
        return not (self.path_upper is not None and raw > self.path_upper.encode("utf-8"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (built directly: ``dataclasses.asdict`` deep-copies and is ~3x slower,
        which shows on plans of 100,000 files)."""
        d = dict(self.__dict__)
        d["partition"] = list(self.partition)
        if self.equality_ids is not None:
            d["equality_ids"] = list(self.equality_ids)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileRef:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


def output_prefix(plan_id: str, task_id: int | None = None) -> str:
    """Start of the file name of every output of a plan (of one task when ``task_id`` is given).

    ``amoro-<plan_id>-t<task_id>-<uuid>.parquet``: the files of a process whose worker died before
    reporting them are found by listing the folders it wrote into.
    """
    head = f"amoro-{plan_id}-"
    return head if task_id is None else f"{head}t{task_id}-"


@dataclass
class RewriteTask:
    """One unit of work for one worker: files of one partition (one spec) to rewrite.

    Attributes:
        task_id: position of the task in its plan (0-based).
        kind: the process kind that produced the task.
        spec_id: partition spec of every file in the task (outputs are written in the table's
            current spec when it differs; see the execute module).
        partition: JSON-safe partition values (spec field order).
        partition_path: human-readable partition, e.g. ``day=2024-01-01/bucket=3``.
        rewrite_data_files: data files to read (deletes applied) and write anew.
        rewrite_pos_data_files: data files kept as they are; the deletes that apply to them are merged
            into one new position-delete file (Amoro's "rewrite-pos").
        delete_files: every delete file that applies to at least one file above.
        plan_id: id of the plan (process) the task belongs to; output file names start with
            :func:`output_prefix` of it, so a dead process's outputs can be found and removed.
    """

    task_id: int
    kind: OptimizingKind
    spec_id: int
    partition: list[Any]
    partition_path: str
    rewrite_data_files: list[FileRef] = field(default_factory=list)
    rewrite_pos_data_files: list[FileRef] = field(default_factory=list)
    delete_files: list[FileRef] = field(default_factory=list)
    plan_id: str = ""

    def __post_init__(self) -> None:
        self.kind = OptimizingKind(self.kind)  # a plain string from user code or old JSON

    @property
    def input_bytes(self) -> int:
        """Bytes of all input files (data + rewrite-pos data + deletes)."""
        files = [*self.rewrite_data_files, *self.rewrite_pos_data_files, *self.delete_files]
        return sum(f.size_bytes for f in files)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "task_id": self.task_id,
            "kind": self.kind.value,
            "spec_id": self.spec_id,
            "partition": list(self.partition),
            "partition_path": self.partition_path,
            "rewrite_data_files": [f.to_dict() for f in self.rewrite_data_files],
            "rewrite_pos_data_files": [f.to_dict() for f in self.rewrite_pos_data_files],
            "delete_files": [f.to_dict() for f in self.delete_files],
            "plan_id": self.plan_id,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RewriteTask:
        """Inverse of :meth:`to_dict`."""
        return cls(
            task_id=d["task_id"],
            kind=OptimizingKind(d["kind"]),
            spec_id=d["spec_id"],
            partition=d["partition"],
            partition_path=d["partition_path"],
            rewrite_data_files=[FileRef.from_dict(f) for f in d.get("rewrite_data_files", [])],
            rewrite_pos_data_files=[FileRef.from_dict(f) for f in d.get("rewrite_pos_data_files", [])],
            delete_files=[FileRef.from_dict(f) for f in d.get("delete_files", [])],
            plan_id=str(d.get("plan_id") or ""),
        )


@dataclass
class OptimizingPlan:
    """A complete plan: the tasks of one optimizing process and the snapshot it was made on.

    Attributes:
        table: table identifier, ``namespace.table``.
        kind: ``minor``, ``major`` or ``full``; None when there is nothing to do.
        base_snapshot_id: snapshot the plan was made on (None for an empty table).
        base_sequence_number: that snapshot's sequence number; outputs are committed with it.
        created_at_ms: planning time, epoch milliseconds.
        target_size: ``self-optimizing.target-size`` in effect.
        tasks: the rewrite tasks.
        partitions: per-partition summary (partition path, kind, cost, reasons) of what was chosen.
        properties: the effective optimizing properties the plan was made with.
        plan_id: unique id of the plan, the optimizing process's identity in the table: the commit
            writes it into the snapshot summary (``amoro.process-id``) and every output file name
            starts with :func:`output_prefix` of it. Generated when the plan is made.
    """

    table: str
    kind: OptimizingKind | None
    base_snapshot_id: int | None
    base_sequence_number: int | None
    created_at_ms: int
    target_size: int
    tasks: list[RewriteTask] = field(default_factory=list)
    partitions: list[dict[str, Any]] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    plan_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.kind = OptimizingKind.parse(self.kind)  # a plain string from user code or old JSON
        for task in self.tasks:
            if not task.plan_id:
                task.plan_id = self.plan_id

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "table": self.table,
            "kind": None if self.kind is None else self.kind.value,
            "base_snapshot_id": self.base_snapshot_id,
            "base_sequence_number": self.base_sequence_number,
            "created_at_ms": self.created_at_ms,
            "target_size": self.target_size,
            "tasks": [t.to_dict() for t in self.tasks],
            "partitions": [dict(p) for p in self.partitions],
            "properties": dict(self.properties),
            "plan_id": self.plan_id,
        }

    def to_json(self) -> str:
        """Compact JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OptimizingPlan:
        """Inverse of :meth:`to_dict`."""
        return cls(
            table=d["table"],
            kind=None if d["kind"] is None else OptimizingKind(d["kind"]),
            base_snapshot_id=d["base_snapshot_id"],
            base_sequence_number=d["base_sequence_number"],
            created_at_ms=d["created_at_ms"],
            target_size=d["target_size"],
            tasks=[RewriteTask.from_dict(t) for t in d.get("tasks", [])],
            partitions=list(d.get("partitions", [])),
            properties=dict(d.get("properties", {})),
            **({"plan_id": str(d["plan_id"])} if d.get("plan_id") else {}),
        )

    @classmethod
    def from_json(cls, s: str) -> OptimizingPlan:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(s))


@dataclass
class TaskResult:
    """What one executed task produced; JSON-serialisable so it can travel as XCom.

    Attributes:
        task_id: the task's id in its plan.
        outputs: new files as :func:`datafile_to_dict` dicts (data files and, for rewrite-pos,
            position-delete files).
        input_files: number of input files read.
        input_bytes: bytes of input files.
        input_records: live records read (after deletes).
        output_records: records written to new data files.
        output_bytes: bytes of new files.
        duration_s: wall time of the task in seconds.
    """

    task_id: int
    outputs: list[dict[str, Any]] = field(default_factory=list)
    input_files: int = 0
    input_bytes: int = 0
    input_records: int = 0
    output_records: int = 0
    output_bytes: int = 0
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskResult:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


def delete_applies(delete: FileRef, data: FileRef) -> bool:
    """Whether ``delete`` (a delete file) may apply to ``data`` (a data file), by the Iceberg v2 rules.

    - A position delete applies to data files whose data sequence number is <= the delete's.
    - An equality delete applies to data files whose data sequence number is < the delete's.
    - Both are scoped to the delete's spec and partition, except deletes written with an
      unpartitioned spec (empty partition tuple), which apply to every partition.

    A position delete names the data files it deletes from; this check does not read the delete
    file, so it answers "may apply" for position deletes (the reader filters by ``file_path``),
    except for a file-scoped position delete (``referenced_data_file`` set), which applies only
    to that one data file.
    """
    if data.content != "data":
        raise ValueError(f"not a data file: {data.path}")
    if delete.content == "position_deletes":
        if delete.data_sequence_number < data.data_sequence_number:
            return False
        if delete.referenced_data_file is not None and delete.referenced_data_file != data.path:
            return False
    elif delete.content == "equality_deletes":
        if delete.data_sequence_number <= data.data_sequence_number:
            return False
    else:
        raise ValueError(f"not a delete file: {delete.path}")
    if not delete.partition:
        return True
    return delete.spec_id == data.spec_id and delete.partition == data.partition
