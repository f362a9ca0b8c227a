"""A DAG generated from YAML, run with ``dag.test()`` on a real small-file table.

Proves: the table is optimized with identical rows (independent reader), runtime state and asset
events are written, maintenance runs (and records its last run) even when optimizing is skipped,
overrides from the YAML reach the engine, and the DAG has the shape the factory promises. The
metadata DB is the session's SQLite DB; ``test_generated_dag_on_postgres`` runs the same proof in
a child pytest whose Airflow uses a fresh PostgreSQL database.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import append_rows, asset_events, run_dag, small_file_table, task_states, xcom_value
from processes import run_captured
from pyiceberg.table import Table

from airflow_provider_amoro.assets import table_asset_uri, table_change_asset_uri
from airflow_provider_amoro.dag_factory import build_dags, loads
from airflow_provider_amoro.testing.reader import content_hash, read_table

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "amoro__amoro_default__demo__events"


def factory_yaml(cache_dir: Path, *, overrides: str = "", maintenance: str = "expire_snapshots: 1h") -> str:
    return textwrap.dedent(
        f"""
        cache_dir: {cache_dir}
        catalogs:
          amoro_default:
            include: ["demo.events"]
            tables:
              "demo.*":
                properties: {{{overrides}}}
        optimizer_groups:
          default: {{slots: 2}}
        defaults:
          schedule: off
          watch_changes: true
          maintenance: {{{maintenance}, clean_dangling_delete_files: off}}
        """
    )


def data_files(table: Table) -> int:
    return sum(1 for _ in table.inspect.files().to_pylist() if True)


def live_files(table: Table) -> int:
    from airflow_provider_amoro.testing.deletes import live_data_files

    return len(live_data_files(table))


@pytest.fixture
def expect_postgres() -> None:
    if os.environ.get("AMORO_EXPECT_PG_METADATA"):
        assert os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")


def test_generated_dag_optimizes_records_state_and_emits_events(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path, expect_postgres: None
) -> None:
    from airflow_provider_amoro.runtime.reader import get_optimizing_history, get_table_runtime

    table = small_file_table(amoro_conn, "demo.events", files=8, rows_per_file=40)
    before = read_table(table)
    assert live_files(table) == 8

    config = loads(factory_yaml(tmp_path / "cache"))
    dags = build_dags(config)
    assert set(dags) == {"amoro__catalog_sync", DAG_ID}
    dag = dags[DAG_ID]
    # every action not switched off in the YAML has its task; the table's properties decide at run time
    assert sorted(dag.task_dict) == [
        "clean_orphan_files",
        "commit",
        "create_tags",
        "evaluate",
        "execute",
        "expire_data",
        "expire_snapshots",
        "optimizing_failed",
        "plan",
        "resolve",
    ]
    assert dag.max_active_runs == 1
    execute = dag.task_dict["execute"]
    assert execute.partial_kwargs["pool"] == "amoro_optimizer_default"
    assert execute.partial_kwargs["max_active_tis_per_dagrun"] == 1  # quota 0.5 of 2 slots
    assert execute.partial_kwargs["retries"] == 5  # self-optimizing.execute.num-retries default
    # scheduled on the change asset watched by TableChangeTrigger (not on the table asset)
    assets = list(dag.timetable.asset_condition.objects)
    assert [a.uri for a in assets] == [table_change_asset_uri("amoro_default", "demo.events")]
    trigger = assets[0].watchers[0].trigger
    assert (trigger.table, trigger.ignore_optimizer) == ("demo.events", True)

    dr = run_dag(dag)
    states = task_states(dr)
    assert dr.state == "success", states

    # optimized, every row kept (independent iceberg-rust reader)
    table = amoro_conn.load_table("demo.events")
    after = read_table(table)
    assert after.num_rows == before.num_rows == 320
    assert content_hash(after) == content_hash(before)
    assert live_files(table) < 8
    optimize_snapshot = table.current_snapshot()
    assert optimize_snapshot is not None
    tasks = xcom_value(dr, "plan")
    assert {k for k in states if k[0] == "execute"} == {("execute", i) for i in range(len(tasks))}
    assert states[("commit", -1)] == "success" and states[("expire_snapshots", -1)] == "success"
    # off by the table's (default) properties: skipped, not failed, nothing recorded
    for action in ("clean_orphan_files", "expire_data", "create_tags"):
        assert states[(action, -1)] == "skipped", (action, states)

    # asset events on the table asset: the commit's (optimizer) and the maintenance action's
    uri = table_asset_uri("amoro_default", "demo.events")
    events = [e for e in asset_events(uri) if e["run_id"] == dr.run_id]
    by_task = {e["task_id"]: e["extra"] for e in events}
    assert by_task["commit"]["producer"] == "amoro-optimizer"
    assert by_task["commit"]["metrics"]["output_records"] == 320
    assert "expire_snapshots" in by_task
    # nothing on the change asset: the DAG's own commit does not schedule it again
    assert [e for e in asset_events(table_change_asset_uri("amoro_default", "demo.events"))] == []

    # runtime state: optimized snapshot, history, maintenance last run
    rt = get_table_runtime("amoro_default", "demo.events")
    assert rt.last_optimized_snapshot_id is not None
    assert rt.dag_id == DAG_ID
    assert rt.maintenance["expire_snapshots"].success
    first_maintenance_ms = rt.maintenance["expire_snapshots"].time_ms
    assert len(get_optimizing_history("amoro_default", "demo.events")) == 1

    # second run: nothing pending -> pipeline skipped; maintenance not due yet -> skipped too
    dr2 = run_dag(dag)
    states2 = task_states(dr2)
    assert dr2.state == "success", states2
    assert states2[("plan", -1)] == "skipped" and states2[("commit", -1)] == "skipped"
    assert states2[("expire_snapshots", -1)] == "skipped"
    rt2 = get_table_runtime("amoro_default", "demo.events")
    assert rt2.maintenance["expire_snapshots"].time_ms == first_maintenance_ms
    assert content_hash(read_table(amoro_conn.load_table("demo.events"))) == content_hash(before)
    assert len(get_optimizing_history("amoro_default", "demo.events")) == 1


def test_maintenance_runs_when_optimizing_is_skipped_and_its_interval_passed(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path
) -> None:
    from airflow_provider_amoro.runtime.reader import get_table_runtime

    table = small_file_table(amoro_conn, "demo.events", files=1)
    before = content_hash(read_table(table))
    dag = build_dags(loads(factory_yaml(tmp_path / "cache", maintenance="expire_snapshots: 1s")))[DAG_ID]
    time.sleep(1.2)  # runtime state persists in the session's DB: let an earlier test's run age past 1 s
    dr = run_dag(dag)
    states = task_states(dr)
    assert dr.state == "success", states
    assert states[("plan", -1)] == "skipped"  # one file: nothing to optimize
    assert states[("expire_snapshots", -1)] == "success"  # maintenance still runs
    first = get_table_runtime("amoro_default", "demo.events").maintenance["expire_snapshots"].time_ms
    time.sleep(1.2)
    dr2 = run_dag(dag)
    assert task_states(dr2)[("expire_snapshots", -1)] == "success"  # interval (1 s) passed: due again
    second = get_table_runtime("amoro_default", "demo.events").maintenance["expire_snapshots"].time_ms
    assert second > first
    assert content_hash(read_table(amoro_conn.load_table("demo.events"))) == before


def test_yaml_overrides_reach_the_engine(airflow_db: Any, amoro_conn: Any, tmp_path: Path) -> None:
    table = small_file_table(amoro_conn, "demo.events", files=5)
    # the table's own properties say: not before 100 small files, never by interval
    with table.transaction() as tx:
        tx.set_properties(
            {
                "self-optimizing.minor.trigger.file-count": "100",
                "self-optimizing.minor.trigger.interval": "-1",
            }
        )
    before = content_hash(read_table(amoro_conn.load_table("demo.events")))

    plain = build_dags(loads(factory_yaml(tmp_path / "c1", maintenance="expire_snapshots: off")))[DAG_ID]
    dr = run_dag(plain)
    assert task_states(dr)[("plan", -1)] == "skipped"
    assert live_files(amoro_conn.load_table("demo.events")) == 5

    overridden = build_dags(
        loads(
            factory_yaml(
                tmp_path / "c2",
                overrides="self-optimizing.minor.trigger.file-count: 2",
                maintenance="expire_snapshots: off",
            )
        )
    )[DAG_ID]
    assert "expire_snapshots" not in overridden.task_dict
    evaluate = overridden.task_dict["evaluate"]
    assert evaluate.property_overrides == {"self-optimizing.minor.trigger.file-count": "2"}
    dr = run_dag(overridden)
    states = task_states(dr)
    assert dr.state == "success", states
    assert states[("commit", -1)] == "success"
    assert xcom_value(dr, "evaluate")["kind"] == "minor"
    table = amoro_conn.load_table("demo.events")
    assert live_files(table) == 1
    assert content_hash(read_table(table)) == before
    # the table's own property is untouched: overrides live in the DAG, not in the table
    assert table.properties["self-optimizing.minor.trigger.file-count"] == "100"


@pytest.mark.skipif(bool(os.environ.get("AMORO_EXPECT_PG_METADATA")), reason="already the PostgreSQL child")
def test_generated_dag_on_postgres_metadata_db(tmp_path: Path) -> None:
    """The first proof again, in a child pytest whose Airflow metadata DB is a fresh PostgreSQL DB."""
    from integration.cluster import create_database, drop_database, migrated_template, pg_url

    try:
        db = create_database("amoro_dagtest", template=migrated_template())
    except Exception as exc:  # no server: skip unless CI
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AMORO_TEST"))}
    env.update({"AMORO_TEST_AIRFLOW_DB": pg_url(db), "AMORO_EXPECT_PG_METADATA": "1"})
    try:
        done = run_captured(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                f"{Path(__file__)}::test_generated_dag_optimizes_records_state_and_emits_events",
            ],
            env=env,
            timeout=600,
            cwd=REPO,
        )
    finally:
        drop_database(db)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout


def test_execute_timeout_and_retry_settings(tmp_path: Path) -> None:
    config = loads(factory_yaml(tmp_path).replace("  schedule: off", "  schedule: off\n  retry_delay: 5s"))
    dag = build_dags(config)[DAG_ID]
    execute = dag.task_dict["execute"]
    assert execute.partial_kwargs["execution_timeout"] == timedelta(hours=2)
    assert execute.partial_kwargs["retry_delay"] == timedelta(seconds=5)
    assert dag.task_dict["evaluate"].retries == 1


def test_maintenance_run_is_recorded_even_when_the_operator_does_not(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path
) -> None:
    """The factory's post_execute hook records the last run of an action whose operator did not."""
    from airflow_provider_amoro.dag_factory.builder import build_table_dag
    from airflow_provider_amoro.operators.base import AmoroTableOperator
    from airflow_provider_amoro.runtime.reader import get_table_runtime

    class SilentExpire(AmoroTableOperator):
        changes_table = True

        def __init__(self, *, property_overrides: Any = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)

        def execute(self, context: Any) -> dict[str, Any]:
            return {"expired": 0, "silent": True}

    small_file_table(amoro_conn, "demo.events", files=1)
    config = loads(factory_yaml(tmp_path / "cache", maintenance="expire_snapshots: 1s"))
    settings = config.resolve("amoro_default", "demo.events")
    time.sleep(1.2)  # runtime state persists in the session's DB: let an earlier test's run age past 1 s
    from airflow_provider_amoro.dag_factory.builder import _Operators

    ops = _Operators()
    ops["expire_snapshots"] = SilentExpire
    dag = build_table_dag(settings, config, operators=ops)
    dr = run_dag(dag)
    assert dr.state == "success", task_states(dr)
    run = get_table_runtime("amoro_default", "demo.events").maintenance["expire_snapshots"]
    assert run.success and run.result == {"expired": 0, "silent": True}
    assert (run.dag_id, run.run_id, run.task_id) == (DAG_ID, dr.run_id, "expire_snapshots")


def test_failed_optimizing_fails_the_run_backs_off_and_recovers(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path
) -> None:
    """A bad table property: evaluate fails, maintenance still runs, the run ends FAILED with the
    reason recorded; the next run backs off (optimizing skipped); once fixed, it optimizes again."""
    from airflow_provider_amoro.runtime.reader import get_table_runtime

    table = small_file_table(amoro_conn, "demo.events", files=6)
    with table.transaction() as tx:
        tx.set_properties({"self-optimizing.target-size": "lots"})
    before = content_hash(read_table(amoro_conn.load_table("demo.events")))
    # a 1 s interval: an earlier test of this session may have recorded expire_snapshots already
    yaml_text = factory_yaml(
        tmp_path / "cache",
        maintenance="expire_snapshots: 1s, clean_orphan_files: off, expire_data: off, create_tags: off",
    ).replace("  schedule: off\n", "  schedule: off\n  failure_backoff: 5s\n  failure_backoff_max: 1h\n")
    time.sleep(1.2)
    dag = build_dags(loads(yaml_text))[DAG_ID]
    assert dag.dagrun_timeout == timedelta(hours=6)
    assert all(t.execution_timeout is not None for t in dag.tasks), {
        t.task_id: t.execution_timeout for t in dag.tasks
    }

    dr = run_dag(dag)
    states = task_states(dr)
    assert dr.state == "failed", states
    assert states[("evaluate", -1)] == "failed"
    assert states[("optimizing_failed", -1)] == "failed"
    assert states[("expire_snapshots", -1)] == "success"  # maintenance still ran
    failure = get_table_runtime("amoro_default", "demo.events").failure
    assert failure is not None and failure["count"] == 1 and failure["task_id"] == "evaluate"
    assert "self-optimizing.target-size" in failure["reason"] and "lots" in failure["reason"]
    assert failure["next_attempt_ms"] - failure["failed_ms"] == 5000
    _lakehouse_shows_the_failure(tmp_path, "self-optimizing.target-size")

    # inside the 5 s backoff (the run's resolve task comes first): optimizing is not tried again
    dr = run_dag(dag)
    states = task_states(dr)
    assert states[("evaluate", -1)] == "skipped", states
    assert get_table_runtime("amoro_default", "demo.events").failure["count"] == 1  # type: ignore[index]

    time.sleep(5.2)
    dr = run_dag(dag)  # backoff over, still broken: a second failure, a longer backoff
    assert dr.state == "failed"
    failure = get_table_runtime("amoro_default", "demo.events").failure
    assert failure is not None and failure["count"] == 2
    assert failure["next_attempt_ms"] - failure["failed_ms"] == 10000

    with amoro_conn.load_table("demo.events").transaction() as tx:
        tx.remove_properties("self-optimizing.target-size")
    time.sleep(10.2)
    dr = run_dag(dag)
    states = task_states(dr)
    assert dr.state == "success", states
    assert states[("commit", -1)] == "success" and states[("optimizing_failed", -1)] == "skipped"
    assert get_table_runtime("amoro_default", "demo.events").failure is None
    assert content_hash(read_table(amoro_conn.load_table("demo.events"))) == before


def _lake_yaml(cache: Path) -> str:
    return textwrap.dedent(
        f"""
        cache_dir: {cache}
        catalogs:
          amoro_default:
            include: ["demo.*"]
        optimizer_groups:
          default: {{slots: 2}}
        defaults:
          schedule: off
          watch_changes: false
          maintenance: {{expire_snapshots: off, clean_dangling_delete_files: off, clean_orphan_files: off,
                         expire_data: off, create_tags: off}}
        catalog_sync: {{evaluate: false}}
        """
    )


def test_a_renamed_table_keeps_its_history_and_a_recreated_one_starts_fresh(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path
) -> None:
    """Runtime state belongs to the table's UUID: rename keeps it, drop + re-create clears it."""
    from airflow_provider_amoro.dag_factory.cache import read_cache
    from airflow_provider_amoro.dag_factory.sync import sync_catalog
    from airflow_provider_amoro.runtime.reader import get_optimizing_history

    config = loads(_lake_yaml(tmp_path / "cache"))
    small_file_table(amoro_conn, "demo.before", files=4)
    small_file_table(amoro_conn, "demo.again", files=4)
    sync_catalog(config, "amoro_default")
    dags = build_dags(config)
    for name in ("before", "again"):
        dr = run_dag(dags[f"amoro__amoro_default__demo__{name}"])
        assert dr.state == "success", task_states(dr)
        assert len(get_optimizing_history("amoro_default", f"demo.{name}")) == 1

    # rename: the sync sees the same UUID under a new name; the new DAG adopts the old state
    amoro_conn.rename_table("demo.before", "demo.after")
    for _ in range(3):
        append_rows(amoro_conn.load_table("demo.after"), [1, 2, 3])
    sync_catalog(config, "amoro_default")
    assert read_cache(config.cache_dir, "amoro_default").tables["demo.after"].renamed_from == "demo.before"
    before_rows = read_table(amoro_conn.load_table("demo.after"))
    dr = run_dag(build_dags(config)["amoro__amoro_default__demo__after"])
    assert dr.state == "success", task_states(dr)
    history = get_optimizing_history("amoro_default", "demo.after")
    assert len(history) == 2  # the process from before the rename, and this one
    assert {h.dag_id for h in history} == {
        "amoro__amoro_default__demo__before",
        "amoro__amoro_default__demo__after",
    }
    after_rows = read_table(amoro_conn.load_table("demo.after"))
    assert (content_hash(after_rows), after_rows.num_rows) == (
        content_hash(before_rows),
        before_rows.num_rows,
    )

    # drop and re-create under the same name: a new UUID, a fresh state
    amoro_conn.drop_table("demo.again")
    small_file_table(amoro_conn, "demo.again", files=4)
    sync_catalog(config, "amoro_default")
    dr = run_dag(build_dags(config)["amoro__amoro_default__demo__again"])
    assert dr.state == "success", task_states(dr)
    history = get_optimizing_history("amoro_default", "demo.again")
    assert len(history) == 1 and history[0].run_id == dr.run_id


def _lakehouse_shows_the_failure(tmp_path: Path, words: str) -> None:
    """The Lakehouse list (its JSON model and its rendered page) says the table failed, and why."""
    import pytest as _pytest

    from airflow_provider_amoro.ui import app as ui_app
    from airflow_provider_amoro.ui import data, sources

    with _pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMORO_CACHE_DIR", str(tmp_path / "no-cache"))  # the UI lists the catalog live
        mp.delenv("AMORO_DAGS_CONFIG", raising=False)
        sources.reset_catalogs()
        result = data.list_tables()
        row = next(t for t in result.tables if t.identifier == "demo.events")
        assert row.failures == 1 and row.next_attempt is not None
        assert row.last_failure is not None and words in row.last_failure
        page = ui_app.render(
            "tables.html",
            links={"base": "/amoro", "airflow": ""},
            result=result,
            statuses=[],
            filters={"q": "", "conn_id": "", "namespace": "", "status": ""},
            sort="identifier",
            order="asc",
            user="",
        ).body.decode()
        sources.reset_catalogs()
    assert "failed 1 time(s) in a row" in page and words in page


@pytest.mark.timeout(600)
def test_a_stalled_catalog_fails_the_run_within_its_timeout_and_the_next_run_succeeds(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog accepts connections and never answers: the run fails within the hook's timeout
    (nothing hangs); once the catalog is back, the next run optimizes the table."""
    import json

    from catalog_servers import black_hole

    table = small_file_table(amoro_conn, "demo.events", files=6)
    before = content_hash(read_table(table))
    yaml_text = factory_yaml(tmp_path / "cache", maintenance="expire_snapshots: off").replace(
        "  schedule: off\n", "  schedule: off\n  failure_backoff: 1s\n  failure_backoff_max: 1s\n"
    )
    dag = build_dags(loads(yaml_text))[DAG_ID]
    good = os.environ["AIRFLOW_CONN_AMORO_DEFAULT"]
    with black_hole() as port:
        stalled = {
            "conn_type": "amoro",
            "extra": {"catalog_type": "rest", "uri": f"http://127.0.0.1:{port}", "timeout": 2},
        }
        monkeypatch.setenv("AIRFLOW_CONN_AMORO_DEFAULT", json.dumps(stalled))
        started = time.monotonic()
        dr = run_dag(dag)
        took = time.monotonic() - started
    states = task_states(dr)
    assert dr.state == "failed", states
    assert states[("optimizing_failed", -1)] == "failed"
    assert took < 120, took  # retries included (task_retries=1, retry_delay 30 s is not waited by dag.test)

    monkeypatch.setenv("AIRFLOW_CONN_AMORO_DEFAULT", good)
    time.sleep(1.5)  # the 1 s backoff
    dr = run_dag(dag)
    states = task_states(dr)
    assert dr.state == "success", states
    assert states[("commit", -1)] == "success"
    assert live_files(amoro_conn.load_table("demo.events")) == 1
    assert content_hash(read_table(amoro_conn.load_table("demo.events"))) == before


def test_two_deployments_on_one_catalog_one_holds_the_table(
    airflow_db: Any, amoro_conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease per table (a table property, committed atomically): the other deployment skips."""
    from airflow_fixtures import set_connection

    from airflow_provider_amoro.lease import LEASE_OWNER

    small_file_table(amoro_conn, "demo.shared", files=4)
    before = read_table(amoro_conn.load_table("demo.shared"))

    def deployment(name: str) -> Any:
        set_connection(monkeypatch, f"lake_{name}", amoro_conn)  # two Airflows, one catalog
        text = textwrap.dedent(
            f"""
            deployment: {name}
            cache_dir: {tmp_path / name}
            catalogs:
              lake_{name}:
                include: ["demo.shared"]
            optimizer_groups:
              default: {{slots: 2}}
            defaults:
              schedule: off
              watch_changes: false
              maintenance: {{expire_snapshots: 1s, clean_dangling_delete_files: off, clean_orphan_files: off,
                             expire_data: off, create_tags: off}}
            """
        )
        return build_dags(loads(text))[f"amoro__lake_{name}__demo__shared"]

    first = run_dag(deployment("east"))
    assert first.state == "success", task_states(first)
    assert task_states(first)[("commit", -1)] == "success"
    assert amoro_conn.load_table("demo.shared").properties[LEASE_OWNER] == "east"
    for i in range(4):
        append_rows(amoro_conn.load_table("demo.shared"), [9000 + i])
    time.sleep(1.2)
    second = run_dag(deployment("west"))
    states = task_states(second)
    # west neither optimizes nor expires: east holds the table, and the skip says so
    assert states[("evaluate", -1)] == "skipped" and states[("commit", -1)] == "skipped", states
    assert states[("expire_snapshots", -1)] == "skipped", states
    assert amoro_conn.load_table("demo.shared").properties[LEASE_OWNER] == "east"
    after = read_table(amoro_conn.load_table("demo.shared"))
    assert after.num_rows == before.num_rows + 4
