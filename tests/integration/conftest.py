"""Integration fixtures: a PostgreSQL Iceberg catalog reachable by every Airflow process, YAML writer."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from catalogs import make_catalog
from pyiceberg.catalog.sql import SqlCatalog

from .cluster import create_database, drop_database, pg_url

CONN_ID = "amoro_it"


def _postgres_or_skip() -> None:
    from .cluster import pg_connect

    try:
        pg_connect("postgres").close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required when CI is set: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")


@pytest.fixture(scope="module")
def pg_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlCatalog]:
    """A pyiceberg SQL catalog in a fresh PostgreSQL database with a local warehouse.

    Its own database (not the session's ``pg_database``): separate Airflow processes reach it by URL.
    """
    _postgres_or_skip()
    db = create_database("amoro_it_catalog")
    root = tmp_path_factory.mktemp("it_catalog")
    catalog = make_catalog("postgres", root, postgres_url=pg_url(db))
    try:
        yield catalog
    finally:
        catalog.engine.dispose()
        drop_database(db)


def factory_yaml(
    path: Path,
    *,
    tables: list[str],
    slots: int,
    cache_dir: Path,
    retry_delay: str = "2s",
    watched: tuple[str, ...] = (),
    groups: dict[str, int] | None = None,
    priorities: dict[str, int] | None = None,
) -> Path:
    """Write a factory configuration managing ``tables`` of the ``amoro_it`` connection.

    Tables in ``watched`` get ``watch_changes: true`` (an AssetWatcher polling every 2 s);
    ``groups`` adds optimizer groups (name: slots) beside ``default``; ``priorities`` sets tables'
    ``priority_weight``.
    """
    include = ", ".join(f'"{t}"' for t in tables)
    extra_groups = "".join(f"\n  {g}: {{slots: {n}}}" for g, n in (groups or {}).items())
    rules = "".join(f'\n      "{t}": {{watch_changes: true}}' for t in watched)
    rules += "".join(f'\n      "{t}": {{priority_weight: {w}}}' for t, w in (priorities or {}).items())
    path.write_text(
        textwrap.dedent(
            f"""
            cache_dir: {cache_dir}
            catalogs:
              {CONN_ID}:
                include: [{include}]
                tables: {{}}{"REPLACE_RULES" if rules else ""}
            optimizer_groups:
              default: {{slots: {slots}}}REPLACE_GROUPS
            defaults:
              schedule: off
              watch_changes: false
              retry_delay: {retry_delay}
              change_poll_interval: 2s
              maintenance: {{expire_snapshots: 1h, clean_dangling_delete_files: off}}
            catalog_sync:
              schedule: off
            """
        )
        .replace("tables: {}REPLACE_RULES", "tables:" + rules)
        .replace("REPLACE_GROUPS", extra_groups)
    )
    return path
