"""Auto tags for each period, offsets, max delay, retention and idempotence.

Commit timestamps come from a controlled clock: pyiceberg stamps a snapshot with ``time.time()``
read through its ``pyiceberg.table.snapshots`` module, which the fixture points at a settable clock.
Everything else (commits, metadata, tags) is real.
"""

from __future__ import annotations

import datetime as dt
import types
from typing import Any

import pytest
from builders import ID_V_SCHEMA, id_v_rows
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from airflow_provider_amoro.maintenance import InvalidPropertyError, create_auto_tags
from airflow_provider_amoro.maintenance.datefmt import format_java

UTC = dt.timezone.utc
START = dt.datetime(2024, 1, 1, 23, 50, tzinfo=UTC)


@pytest.fixture
def table(sqlite_catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Snapshots committed at 2024-01-02 00:05, 00:20 and 00:35 UTC."""
    import pyiceberg.table.snapshots as snapshots

    clock = {"now": START.timestamp()}
    monkeypatch.setattr(snapshots, "time", types.SimpleNamespace(time=lambda: clock["now"]))
    sqlite_catalog.create_namespace("ns")
    tbl = sqlite_catalog.create_table(
        "ns.t", schema=ID_V_SCHEMA, properties={"tag.auto-create.enabled": "true"}
    )
    for i in range(3):
        clock["now"] += 15 * 60
        tbl.append(id_v_rows([i]))
    return tbl


def _ids(table: Table) -> list[int]:
    return [s.snapshot_id for s in table.snapshots()]


NOW = dt.datetime(2024, 1, 2, 0, 40, tzinfo=UTC)


def test_daily(table: Table) -> None:
    result = create_auto_tags(table, now=NOW)
    assert result.created and result.tag_name == "tag-20240101"
    assert table.metadata.refs["tag-20240101"].snapshot_id == _ids(table)[0]
    assert table.metadata.refs["tag-20240101"].max_ref_age_ms is None
    again = create_auto_tags(table, now=NOW)
    assert not again.created and again.reason == "tag exists" and again.snapshot_id == _ids(table)[0]
    assert [r for r in table.metadata.refs if r != "main"] == ["tag-20240101"]


def test_offset_and_max_age(table: Table) -> None:
    table.transaction().set_properties(
        {"tag.auto-create.trigger.offset.minutes": "10", "tag.auto-create.max-age-ms": "86400000"}
    ).commit_transaction()
    result = create_auto_tags(table, now=NOW)
    assert result.created and result.snapshot_id == _ids(table)[1]  # first at or after 00:10
    assert table.metadata.refs["tag-20240101"].max_ref_age_ms == 86_400_000


def test_max_delay_and_not_yet(table: Table) -> None:
    table.transaction().set_properties(
        {"tag.auto-create.trigger.max-delay.minutes": "3"}
    ).commit_transaction()
    late = create_auto_tags(table, now=NOW)
    assert not late.created and "max-delay" in (late.reason or "")
    table.transaction().set_properties(
        {"tag.auto-create.trigger.max-delay.minutes": "0"}
    ).commit_transaction()
    assert create_auto_tags(table, now=NOW).created  # 0 = no limit, as in Amoro
    table.manage_snapshots().remove_tag("tag-20240101").commit()
    table.transaction().set_properties(
        {"tag.auto-create.trigger.max-delay.minutes": "60", "tag.auto-create.trigger.offset.minutes": "39"}
    ).commit_transaction()
    waiting = create_auto_tags(table, now=NOW)  # trigger 00:39, no snapshot since
    assert not waiting.created and "no snapshot" in (waiting.reason or "")
    assert "tag-20240101" not in table.metadata.refs


def test_hourly(table: Table) -> None:
    # no tag-format: Amoro's hourly default 'tag-'yyyyMMddHH
    table.transaction().set_properties({"tag.auto-create.trigger.period": "hourly"}).commit_transaction()
    result = create_auto_tags(table, now=NOW)
    assert result.created and result.tag_name == "tag-2024010123" and result.snapshot_id == _ids(table)[0]
    later = create_auto_tags(table, now=NOW + dt.timedelta(hours=1))  # trigger 01:00, nothing yet
    assert later.tag_name == "tag-2024010200" and not later.created


def test_monthly(table: Table) -> None:
    table.transaction().set_properties(
        {"tag.auto-create.trigger.period": "monthly", "tag.auto-create.tag-format": "'month_'yyyy-MM"}
    ).commit_transaction()
    late = create_auto_tags(table, now=NOW)  # trigger 2024-01-01 00:00: first snapshot a day later
    assert not late.created and late.tag_name == "month_2023-12"
    table.transaction().set_properties(
        {"tag.auto-create.trigger.max-delay.minutes": "2000"}
    ).commit_transaction()
    result = create_auto_tags(table, now=NOW)
    assert result.created and result.snapshot_id == _ids(table)[0]


def test_disabled_and_bad_values(table: Table) -> None:
    table.transaction().set_properties({"tag.auto-create.enabled": "false"}).commit_transaction()
    assert create_auto_tags(table, now=NOW).skip_reason == "tag.auto-create.enabled=false"
    for prop, value in [
        ("tag.auto-create.trigger.period", "weekly"),
        ("tag.auto-create.trigger.offset.minutes", "-5"),
        ("tag.auto-create.max-age-ms", "0"),
        ("tag.auto-create.tag-format", "'tag-'yyyyMMddQ"),
        ("tag.auto-create.tag-format", "'unclosed"),
    ]:
        table.transaction().set_properties(
            {"tag.auto-create.enabled": "true", prop: value}
        ).commit_transaction()
        with pytest.raises(InvalidPropertyError) as info:
            create_auto_tags(table, now=NOW)
        assert prop in str(info.value) and value in str(info.value)
        table.transaction().remove_properties(prop).commit_transaction()


def test_java_patterns() -> None:
    when = dt.datetime(2024, 3, 7, 8, 5, 9, 123456)
    assert format_java(when, "p", "yyyy-MM-dd HH:mm:ss.SSS") == "2024-03-07 08:05:09.123"
    assert format_java(when, "p", "'tag-'yyyyMMdd") == "tag-20240307"
    assert format_java(when, "p", "yy/M/d 'o''clock'") == "24/3/7 o'clock"
