"""Amoro's table maintenance for Iceberg tables, on pyiceberg: no Airflow import here.

- :func:`expire_snapshots`: expire snapshots and delete the files only they reached.
- :func:`clean_orphan_files`: delete unreferenced files under the table's ``data/`` and ``metadata/``.
- :func:`clean_dangling_delete_files`: remove delete files that apply to no live data file.
- :func:`expire_data`: drop whole data files or partitions older than the retention.
- :func:`create_auto_tags`: tag the first snapshot of each period.

Every action reads Amoro's table properties (see :mod:`.config`), accepts ``now=`` for tests,
returns a result dataclass with ``to_dict()``, and is skipped with a reason when ``gc.enabled`` is
false (tags excepted: they delete nothing).
"""

from airflow_provider_amoro.maintenance.config import InvalidPropertyError, MaintenanceConfig
from airflow_provider_amoro.maintenance.dangling import clean_dangling_delete_files
from airflow_provider_amoro.maintenance.data_expire import expire_data
from airflow_provider_amoro.maintenance.expire import expire_snapshots
from airflow_provider_amoro.maintenance.orphans import clean_orphan_files
from airflow_provider_amoro.maintenance.results import (
    DanglingResult,
    DataExpireResult,
    ExpireResult,
    OrphanResult,
    TagResult,
)
from airflow_provider_amoro.maintenance.tags import create_auto_tags

__all__ = [
    "DanglingResult",
    "DataExpireResult",
    "ExpireResult",
    "InvalidPropertyError",
    "MaintenanceConfig",
    "OrphanResult",
    "TagResult",
    "clean_dangling_delete_files",
    "clean_orphan_files",
    "create_auto_tags",
    "expire_data",
    "expire_snapshots",
]
