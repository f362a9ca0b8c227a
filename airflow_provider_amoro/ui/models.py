"""Response models of the Lakehouse UI's JSON API (they also make its OpenAPI schema).

Field names follow Apache Amoro's dashboard where one exists (``healthScore`` becomes
``health_score``: snake case, as in Airflow's own REST API). Sizes are bytes, times are epoch
milliseconds (UTC), as in Amoro.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TableSummary(BaseModel):
    """One row of the tables list: what the catalog-sync cache and the runtime state know of a table."""

    conn_id: str = Field(description="Airflow connection id of the table's catalog")
    catalog: str = Field(description="catalog name (the connection id unless the connection names one)")
    namespace: str
    table: str
    identifier: str = Field(description="namespace.table")
    format: str = Field(default="iceberg", description="table format, e.g. 'iceberg v2'")
    status: str = Field(default="UNKNOWN", description="IDLE, PENDING, PLANNING, MINOR_OPTIMIZING, ...")
    health_score: int | None = Field(default=None, description="0-100, 100 is healthy")
    data_files: int | None = None
    delete_files: int | None = None
    position_delete_files: int | None = None
    equality_delete_files: int | None = None
    records: int | None = None
    total_size: int | None = Field(default=None, description="bytes of live data and delete files")
    avg_file_size: int | None = Field(default=None, description="bytes per live file, data and delete files")
    pending_kind: str | None = Field(
        default=None, description="minor, major or full when optimizing is pending"
    )
    pending_reason: str | None = None
    last_optimized: int | None = Field(default=None, description="epoch ms of the last optimizing commit")
    optimizer_group: str | None = None
    cost: int | None = Field(
        default=None, description="Amoro's optimizing cost estimate in bytes (orders tables)"
    )
    error: str | None = Field(default=None, description="why the catalog sync could not read the table")
    snapshot_id: int | None = None
    summarized_at: int | None = Field(default=None, description="epoch ms when the summary was computed")
    dag_id: str = Field(description="the table's generated DAG id")
    failures: int | None = Field(
        default=None, description="optimizing failures in a row (None: the last attempt did not fail)"
    )
    last_failure: str | None = Field(default=None, description="the failed task and its error")
    next_attempt: int | None = Field(
        default=None, description="epoch ms before which optimizing is not tried again (backoff)"
    )
    stale: bool = Field(
        default=False,
        description="the file statistics come from a catalog sync older than the table's last optimizing "
        "commit (the next sync refreshes them; the table page is always current)",
    )
    managed: bool | None = Field(
        default=None,
        description="whether the DAG factory configuration selects the table (None: no configuration "
        "readable); an unmanaged table has no DAG",
    )


class TableList(BaseModel):
    """A page of the tables list."""

    total: int = Field(description="tables matching the filter, before limit/offset")
    tables: list[TableSummary]
    source: str = Field(description="'cache' (catalog-sync cache file) or 'catalog' (live listing)")
    cache_updated_at: int | None = Field(default=None, description="epoch ms the cache file was written")
    notes: list[str] = Field(
        default_factory=list,
        description="why a live listing is empty or incomplete: a catalog's error, or the catalog names "
        "that hold tables when the connection's catalog name holds none",
    )


class Catalog(BaseModel):
    """A catalog (connection) with managed tables."""

    conn_id: str
    catalog: str
    namespaces: list[str]
    tables: int


class SchemaField(BaseModel):
    """A column of the current schema (nested fields are flattened with dotted names)."""

    id: int
    name: str
    type: str
    required: bool
    doc: str | None = None


class PartitionField(BaseModel):
    """A field of the default partition spec."""

    field_id: int
    source_id: int
    source_name: str
    transform: str
    name: str


class SortField(BaseModel):
    """A field of the default sort order."""

    source_id: int
    source_name: str
    transform: str
    direction: str
    null_order: str


class PropertyValue(BaseModel):
    """A table property; Amoro's own properties carry their default and effective value."""

    name: str
    value: str | None = Field(default=None, description="value set on the table, None when unset")
    default: str | None = Field(default=None, description="Amoro's default (Amoro properties only)")
    effective: str | None = Field(default=None, description="value in force: set value or default")
    override: str | None = Field(
        default=None, description="value the DAG factory configuration applies over the table's own"
    )
    source: str | None = Field(
        default=None, description="where the effective value comes from: table, factory, default"
    )
    amoro: bool = Field(default=False, description="an Amoro self-optimizing or maintenance property")
    group: str | None = Field(default=None, description="self-optimizing or maintenance")


class EvaluationView(BaseModel):
    """What the engine says about the table now (health, pending optimizing, reasons)."""

    kind: str | None = None
    health_score: int | None = None
    cost: float | None = None
    reasons: list[str] = []
    partitions: list[dict[str, Any]] = []
    totals: dict[str, Any] = {}
    error: str | None = None


class TableDetails(BaseModel):
    """The Details tab: metadata of the table at its current snapshot."""

    summary: TableSummary
    location: str
    format_version: int
    table_uuid: str
    current_snapshot_id: int | None
    last_updated_ms: int
    schema_fields: list[SchemaField] = Field(alias="schema")
    partition_spec: list[PartitionField]
    sort_order: list[SortField]
    properties: list[PropertyValue]
    property_errors: list[str] = Field(default=[], description="Amoro properties whose value cannot be used")
    evaluation: EvaluationView | None = None

    model_config = {"populate_by_name": True}


class PartitionFilesView(BaseModel):
    """Live files of one partition."""

    partition: str
    spec_id: int
    data_files: int
    data_size: int
    records: int
    position_delete_files: int
    position_delete_size: int
    equality_delete_files: int
    equality_delete_size: int
    avg_data_file_size: int
    last_updated_ms: int | None = None


class HistogramBin(BaseModel):
    """A bin of the data file size histogram: files with ``lower <= size < upper``."""

    label: str
    lower: int
    upper: int | None
    count: int
    bytes: int


class FileEntry(BaseModel):
    """One live data or delete file."""

    content: str
    file_path: str
    partition: str
    record_count: int
    file_size_in_bytes: int
    spec_id: int


class TableFilesView(BaseModel):
    """The Files tab: live files by partition, by Amoro file class, and a size histogram."""

    snapshot_id: int | None
    partitions: list[PartitionFilesView]
    histogram: list[HistogramBin]
    classes: dict[str, int] = Field(
        description="data file counts by Amoro class: fragment, undersized, target (size thresholds from "
        "self-optimizing.target-size, fragment-ratio and min-target-size-ratio)"
    )
    thresholds: dict[str, int]
    files: list[FileEntry] = []


class SnapshotView(BaseModel):
    """One snapshot with the counters of its summary."""

    snapshot_id: int
    parent_id: int | None
    sequence_number: int | None
    timestamp_ms: int
    operation: str | None
    producer: str | None
    added_data_files: int = 0
    removed_data_files: int = 0
    added_delete_files: int = 0
    removed_delete_files: int = 0
    added_records: int = 0
    removed_records: int = 0
    added_size: int = 0
    removed_size: int = 0
    total_data_files: int | None = None
    total_delete_files: int | None = None
    total_records: int | None = None
    total_size: int | None = None
    avg_file_size: int | None = None
    current: bool = False
    summary: dict[str, str] = {}


class SnapshotFiles(BaseModel):
    """The files one snapshot added and removed (Amoro: a snapshot's detail)."""

    snapshot: SnapshotView
    added_files: list[FileEntry]
    removed_files: list[FileEntry]
    added_count: int = Field(description="all files the snapshot added (the list may be cut by limit)")
    removed_count: int = Field(description="all files the snapshot removed (the list may be cut by limit)")
    truncated: bool = False


class _IOCountersView(BaseModel):
    """The six I/O counters (the engine's ``IOCounters``, same names)."""

    input_files: int | None = None
    input_bytes: int | None = None
    input_records: int | None = None
    output_files: int | None = None
    output_bytes: int | None = None
    output_records: int | None = None


class OptimizingTaskView(_IOCountersView):
    """A task of an optimizing process (one mapped execute task).

    Built from the runtime's ``TaskRecord`` with ``model_validate(record, from_attributes=True)``:
    each field has the record's name.
    """

    model_config = ConfigDict(from_attributes=True, coerce_numbers_to_str=True)

    task_id: str
    partition: str | None = None
    status: str | None = None
    attempts: int | None = None
    duration_ms: int | None = None
    airflow_state: str | None = None
    failure: str | None = None


class OptimizingProcessView(_IOCountersView):
    """One optimizing process (a run of the table's DAG that optimized, or tried to).

    Built from the runtime's ``ProcessRecord`` with ``model_validate(record, from_attributes=True)``:
    each field has the record's name.
    """

    model_config = ConfigDict(from_attributes=True)

    process_id: str
    kind: str | None = None
    status: str | None = None
    dag_id: str | None = None
    run_id: str | None = None
    plan_time_ms: int | None = Field(default=None, description="epoch ms the plan was made")
    end_time_ms: int | None = None
    duration_ms: int | None = None
    base_snapshot_id: int | None = Field(default=None, description="snapshot the plan was made on")
    committed_snapshot_id: int | None = Field(default=None, description="snapshot the commit produced")
    task_count: int | None = None
    failure: str | None = None
    summary: dict[str, Any] = {}
    tasks: list[OptimizingTaskView] = []


class OptimizingProcesses(BaseModel):
    """The Optimizing tab."""

    available: bool = Field(description="False when no runtime state can be read")
    status: str = "UNKNOWN"
    processes: list[OptimizingProcessView]
    note: str | None = None


class MaintenanceRunView(BaseModel):
    """The last run of one maintenance action."""

    action: str = Field(description="expire-snapshots, clean-orphan-files, clean-dangling-deletes, ...")
    enabled: bool | None = None
    last_run: int | None = None
    status: str | None = None
    result: dict[str, Any] = {}


class MaintenanceInfo(BaseModel):
    """The Maintenance tab."""

    available: bool
    runs: list[MaintenanceRunView]
    note: str | None = None


class HistoryPoint(BaseModel):
    """A point of the file count / average file size chart."""

    snapshot_id: int
    timestamp_ms: int
    files: int
    data_files: int
    delete_files: int
    avg_file_size: int
    operation: str | None = None


class TableHistory(BaseModel):
    """File count and average file size over snapshots."""

    points: list[HistoryPoint]
