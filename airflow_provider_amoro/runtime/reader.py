"""Readers of tables' runtime state, for the UI and the API (they run in the api-server).

Readers may read Airflow's metadata DB (task code never does: it writes through the Task SDK, see
:mod:`airflow_provider_amoro.runtime.recorder`). A table's state is the combination of:

1. the records in the asset state store of its asset (``amoro.*`` keys);
2. the live states of the task instances of its active DAG runs, which decide the status: a running
   execute task instance means ``*_OPTIMIZING`` *now*, whatever was recorded. A hint left by a worker
   that died is ignored as soon as its DAG run is no longer active, so no status can stay stuck;
3. the XComs and task instances of the DAG runs that ran optimizing processes, which give each
   process's plan, per-task results and attempts (also for a process that failed before commit).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_amoro.assets import ICEBERG_SCHEME, parse_table_asset_uri, table_asset_uri
from airflow_provider_amoro.io_counters import IOCounters
from airflow_provider_amoro.runtime.state import (
    KEY_EVALUATION,
    KEY_FAILURE,
    KEY_HISTORY,
    KEY_IDENTITY,
    KEY_MAINTENANCE_PREFIX,
    KEY_OPTIMIZED,
    KEY_PROCESS,
    KEY_STATUS,
    STAGE_BY_OPERATOR,
    MaintenanceRecord,
    ProcessRecord,
    ProcessStatus,
    StatusHint,
    TableRuntime,
    TableStatus,
    TaskRecord,
    table_dag_id,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_ACTIVE_RUN_STATES = ("queued", "running")
_FINISHED_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
_STARTED_TI_STATES = frozenset(
    {"running", "queued", "up_for_retry", "up_for_reschedule", "deferred", "restarting"}
)
PLAN_XCOM_KEY = "plan"
"""XCom key under which ``PlanOptimizingOperator`` pushes the plan JSON."""


@dataclass
class _TI:
    task_id: str
    map_index: int
    state: str | None
    stage: str | None
    try_number: int
    start_ms: int | None
    end_ms: int | None
    duration_s: float | None


def _ms(value: Any) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _state_str(state: Any) -> str | None:
    if state is None:
        return None
    return str(getattr(state, "value", state))


# ---- DB access ------------------------------------------------------------------------------------


def _load_state(session: Session, uris: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{uri: {key: value}}`` of the ``amoro.*`` asset-state keys of the given assets."""
    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from sqlalchemy import select

    out: dict[str, dict[str, Any]] = {u: {} for u in uris}
    if not uris:
        return out
    rows = session.execute(
        select(AssetModel.uri, AssetStateStoreModel.key, AssetStateStoreModel.value)
        .join(AssetModel, AssetModel.id == AssetStateStoreModel.asset_id)
        .where(AssetModel.uri.in_(list(uris)), AssetStateStoreModel.key.like("amoro.%"))
    ).all()
    for uri, key, value in rows:
        try:
            out[uri][key] = json.loads(value)
        except (TypeError, ValueError):
            continue
    return out


def _run_state(session: Session, dag_id: str, run_id: str) -> str | None:
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    state = session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    return _state_str(state)


def _active_runs(session: Session, dag_ids: Iterable[str]) -> list[tuple[str, str]]:
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    ids = sorted(set(dag_ids))
    if not ids:
        return []
    rows = session.execute(
        select(DagRun.dag_id, DagRun.run_id)
        .where(DagRun.dag_id.in_(ids), DagRun.state.in_(_ACTIVE_RUN_STATES))
        .order_by(DagRun.id.desc())
    ).all()
    return [(r.dag_id, r.run_id) for r in rows]


def _task_instances(session: Session, dag_id: str, run_id: str) -> list[_TI]:
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    rows = session.execute(
        select(
            TaskInstance.task_id,
            TaskInstance.map_index,
            TaskInstance.state,
            TaskInstance.operator,
            TaskInstance.custom_operator_name,
            TaskInstance.try_number,
            TaskInstance.start_date,
            TaskInstance.end_date,
            TaskInstance.duration,
        ).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
    ).all()
    return [
        _TI(
            task_id=r.task_id,
            map_index=r.map_index,
            state=_state_str(r.state),
            stage=STAGE_BY_OPERATOR.get(r.custom_operator_name or "")
            or STAGE_BY_OPERATOR.get(r.operator or ""),
            try_number=int(r.try_number or 0),
            start_ms=_ms(r.start_date),
            end_ms=_ms(r.end_date),
            duration_s=float(r.duration) if r.duration is not None else None,
        )
        for r in rows
    ]


def _xcoms(
    session: Session, dag_id: str, run_id: str, task_ids: Iterable[str], key: str
) -> dict[tuple[str, int], Any]:
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    ids = sorted(set(task_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(XComModel.task_id, XComModel.map_index, XComModel.value).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.task_id.in_(ids),
            XComModel.key == key,
        )
    ).all()
    return {(r.task_id, r.map_index): XComModel.deserialize_value(r) for r in rows}


# ---- derivation -----------------------------------------------------------------------------------


def _is_active(ti: _TI) -> bool:
    return ti.state not in _FINISHED_TI_STATES


def _since(tis: Iterable[_TI]) -> int | None:
    starts = [t.start_ms for t in tis if t.start_ms is not None]
    return min(starts) if starts else None


def _status_of_run(
    tis: list[_TI], kind: str | None, hint: StatusHint | None
) -> tuple[TableStatus, int | None] | None:
    """The table status an active run's task instances show, or None if the run is not optimizing now."""
    by_stage: dict[str, list[_TI]] = {}
    for ti in tis:
        if ti.stage:
            by_stage.setdefault(ti.stage, []).append(ti)
    one_task = [t for t in by_stage.get("one_task", []) if t.state in _STARTED_TI_STATES]
    if one_task:
        if hint is not None and hint.task_id in {t.task_id for t in one_task}:
            try:
                return TableStatus(hint.status), hint.updated_ms
            except ValueError:
                pass
        return TableStatus.optimizing(kind), _since(one_task)
    plan = by_stage.get("plan", [])
    execute = by_stage.get("execute", [])
    commit = by_stage.get("commit", [])
    if commit and any(t.state in _STARTED_TI_STATES for t in commit):
        return TableStatus.COMMITTING, _since(commit)
    plan_done = bool(plan) and all(t.state == "success" for t in plan)
    if plan_done:
        if any(_is_active(t) for t in execute):
            return TableStatus.optimizing(kind), _since(execute) or max((t.end_ms or 0) for t in plan)
        if commit and any(_is_active(t) for t in commit):
            return TableStatus.COMMITTING, _since(commit)
        return None
    if any(t.state in _STARTED_TI_STATES for t in plan):
        return TableStatus.PLANNING, _since(plan)
    evaluate = by_stage.get("evaluate", [])
    if plan and any(_is_active(t) for t in plan) and evaluate and all(t.state == "success" for t in evaluate):
        return TableStatus.PLANNING, max((t.end_ms or 0) for t in evaluate) or None
    return None


def _plan_header(session: Session, dag_id: str, run_id: str, plan_task_id: str) -> dict[str, Any]:
    """The plan XCom of a run (``{}`` when absent or unreadable), with its tasks or task references."""
    raw_plan = _xcoms(session, dag_id, run_id, [plan_task_id], PLAN_XCOM_KEY).get((plan_task_id, -1))
    plan: dict[str, Any] = {}
    if isinstance(raw_plan, str):
        try:
            plan = json.loads(raw_plan)
        except ValueError:
            plan = {}
    elif isinstance(raw_plan, dict):
        plan = raw_plan
    if plan and not plan.get("tasks"):
        # The plan header travels without its tasks; they are the plan task's return value.
        returned = _xcoms(session, dag_id, run_id, [plan_task_id], "return_value").get((plan_task_id, -1))
        if isinstance(returned, list):
            plan = {**plan, "tasks": returned}
    return plan


def _task_records(
    plan: dict[str, Any], exec_tis: list[_TI], results: dict[tuple[str, int], Any]
) -> list[TaskRecord]:
    """One record per planned task: planned inputs, then the worker's ``TaskResult`` when it reported."""
    # the engine's model loads pyiceberg: imported where it is used (the reader's importers, the
    # operators among them, load on every DAG parse)
    from airflow_provider_amoro.optimizing.model import RewriteTask, TaskResult

    plan_tasks = {int(t.get("task_id", i)): t for i, t in enumerate(plan.get("tasks") or [])}
    by_map = {t.map_index: t for t in exec_tis}
    tasks: list[TaskRecord] = []
    for tid in sorted(plan_tasks) or sorted(i for i in by_map if i >= 0):
        spec = plan_tasks.get(tid, {})
        ti = by_map.get(tid)
        res = results.get((ti.task_id, ti.map_index)) if ti else None
        # a task given whole (not as a reference into the plan store) holds its input files
        planned = RewriteTask.from_dict(spec) if "rewrite_data_files" in spec else None
        task = TaskRecord(
            task_id=tid,
            partition=planned.partition_path if planned else str(spec.get("partition_path", "")),
            attempts=ti.try_number if ti else 0,
            airflow_state=ti.state if ti else None,
        )
        if planned is not None:
            task.set_counters(IOCounters.planned(planned))
        if isinstance(res, dict):
            result = TaskResult.from_dict(res)
            task.status = ProcessStatus.SUCCESS.value
            task.set_counters(IOCounters.of_result(result))
            task.duration_s = result.duration_s
        elif ti is not None and ti.state in ("failed", "upstream_failed"):
            task.status = ProcessStatus.FAILED.value
        elif ti is not None and ti.state in _STARTED_TI_STATES:
            task.status = "RUNNING"
        tasks.append(task)
    return tasks


def _process_from_run(
    session: Session,
    *,
    conn_id: str,
    table: str,
    dag_id: str,
    run_id: str,
    tis: list[_TI] | None = None,
    recorded: ProcessRecord | None = None,
) -> ProcessRecord | None:
    """Rebuild a process of the split operators from a DAG run's XComs and task instances."""
    tis = tis if tis is not None else _task_instances(session, dag_id, run_id)
    plan_tis = [t for t in tis if t.stage == "plan"]
    if not plan_tis:
        return None
    plan_ti = plan_tis[0]
    plan = _plan_header(session, dag_id, run_id, plan_ti.task_id)
    if not plan and recorded is None:
        return None
    exec_tis = [t for t in tis if t.stage == "execute"]
    commit_tis = [t for t in tis if t.stage == "commit"]
    results = _xcoms(session, dag_id, run_id, [t.task_id for t in exec_tis], "return_value")
    commits = _xcoms(session, dag_id, run_id, [t.task_id for t in commit_tis], "return_value")
    tasks = _task_records(plan, exec_tis, results)
    commit_out = next((v for v in commits.values() if isinstance(v, dict)), None)
    run_state = _run_state(session, dag_id, run_id)
    failed = [
        t
        for t in tis
        if t.stage in ("plan", "execute", "commit") and t.state in ("failed", "upstream_failed")
    ]
    if (
        commit_out is not None
        and commit_out.get("status", ProcessStatus.SUCCESS.value) == ProcessStatus.SUCCESS.value
    ):
        status = ProcessStatus.SUCCESS
    elif run_state in _ACTIVE_RUN_STATES and not failed:
        status = ProcessStatus.RUNNING
    elif failed or run_state == "failed":
        status = ProcessStatus.FAILED
    else:
        status = ProcessStatus.CLOSED
    base = recorded or ProcessRecord(
        process_id=f"{dag_id}/{run_id}", table=table, conn_id=conn_id, kind=None, status=""
    )
    proc = ProcessRecord.from_dict(base.to_dict())
    proc.dag_id, proc.run_id = dag_id, run_id
    proc.status = status.value
    if plan:
        # the header through the engine's own reader (tasks may be references into the plan store)
        from airflow_provider_amoro.optimizing.model import OptimizingPlan

        header = OptimizingPlan.from_dict({**plan, "tasks": []})
        proc.kind = None if header.kind is None else header.kind.value
        proc.base_snapshot_id = header.base_snapshot_id
    proc.plan_time_ms = int(plan.get("created_at_ms") or proc.plan_time_ms or plan_ti.end_ms or 0)
    proc.task_count = len(tasks)
    proc.tasks = tasks
    proc.set_counters(IOCounters.total(t.counters() for t in tasks))
    if commit_out is not None:
        proc.committed_snapshot_id = commit_out.get("snapshot_id", proc.committed_snapshot_id)
        if commit_out.get("failure"):
            proc.failure = str(commit_out["failure"])
    if status is ProcessStatus.FAILED and not proc.failure:
        worst = failed[0] if failed else None
        proc.failure = (
            f"task {worst.task_id}"
            + (f"[{worst.map_index}]" if worst.map_index >= 0 else "")
            + f" {worst.state} after {worst.try_number} attempt(s)"
            if worst
            else f"DAG run {run_state}"
        )
    if status is not ProcessStatus.RUNNING:
        ends = [t.end_ms for t in tis if t.end_ms is not None]
        proc.end_time_ms = proc.end_time_ms or (max(ends) if ends else None)
    return proc


@dataclass
class _Stored:
    hint: StatusHint | None
    evaluation: dict[str, Any] | None
    process: ProcessRecord | None
    optimized: dict[str, Any]
    history: list[ProcessRecord]
    maintenance: dict[str, MaintenanceRecord]
    failure: dict[str, Any] | None = None


def _parse_stored(raw: dict[str, Any]) -> _Stored:
    hint = raw.get(KEY_STATUS)
    proc = raw.get(KEY_PROCESS)
    hist = raw.get(KEY_HISTORY)
    maint: dict[str, MaintenanceRecord] = {}
    for key, value in raw.items():
        if key.startswith(KEY_MAINTENANCE_PREFIX) and isinstance(value, dict):
            maint[key[len(KEY_MAINTENANCE_PREFIX) :]] = MaintenanceRecord.from_dict(value)
    evaluation = raw.get(KEY_EVALUATION)
    optimized = raw.get(KEY_OPTIMIZED)
    failure = raw.get(KEY_FAILURE)
    return _Stored(
        hint=StatusHint.from_dict(hint) if isinstance(hint, dict) else None,
        evaluation=evaluation if isinstance(evaluation, dict) else None,
        process=ProcessRecord.from_dict(proc) if isinstance(proc, dict) else None,
        optimized=optimized if isinstance(optimized, dict) else {},
        history=[ProcessRecord.from_dict(h) for h in hist if isinstance(h, dict)]
        if isinstance(hist, list)
        else [],
        maintenance=maint,
        failure=failure if isinstance(failure, dict) and failure.get("count") else None,
    )


def _idle_or_pending(stored: _Stored) -> tuple[TableStatus, int | None]:
    """Status without an active run: PENDING when work was found (or planned) after the last commit.

    A process that was planned but never committed (failed, or its run died) leaves the table
    PENDING: it is planned again by the next run.
    """
    last_commit = int(stored.optimized.get("last_commit_ms") or 0)
    ev = stored.evaluation
    if ev and ev.get("kind"):
        evaluated = int(ev.get("evaluated_ms") or 0)
        if evaluated >= last_commit:
            return TableStatus.PENDING, evaluated or None
    proc = stored.process
    unfinished = (ProcessStatus.RUNNING.value, ProcessStatus.FAILED.value, ProcessStatus.UNKNOWN.value)
    if (
        proc is not None
        and proc.status in unfinished
        and proc.task_count
        and proc.plan_time_ms >= last_commit
    ):
        return TableStatus.PENDING, proc.end_time_ms or proc.plan_time_ms
    return TableStatus.IDLE, stored.optimized.get("last_commit_ms")


def _all_active_runs(session: Session) -> set[tuple[str, str]]:
    """Every active DAG run (one query; active runs are few)."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    rows = session.execute(select(DagRun.dag_id, DagRun.run_id).where(DagRun.state.in_(_ACTIVE_RUN_STATES)))
    return {(r.dag_id, r.run_id) for r in rows}


def status_without_active_run(raw_state: dict[str, Any]) -> str:
    """The status of a table none of whose runs is active, from its raw ``amoro.*`` state values.

    For listings that read the state keys themselves (e.g. the UI's fast table list): the same rule
    :func:`get_table_runtime` applies, so both always agree.

    Args:
        raw_state: ``{key: decoded JSON value}`` of the table asset's ``amoro.*`` keys (at least
            ``amoro.evaluation``, ``amoro.optimized`` and ``amoro.process``).
    """
    return _idle_or_pending(_parse_stored(raw_state))[0].value


def _build_runtime(
    session: Session,
    conn_id: str,
    table: str,
    raw: dict[str, Any],
    active_runs: set[tuple[str, str]] | None = None,
) -> TableRuntime:
    """One table's runtime; ``active_runs`` (all active runs) saves per-table queries in listings."""
    stored = _parse_stored(raw)
    dag_id = table_dag_id(conn_id, table)
    rt = TableRuntime(
        conn_id=conn_id,
        table=table,
        asset_uri=table_asset_uri(conn_id, table),
        dag_id=dag_id,
        last_optimized_snapshot_id=stored.optimized.get("last_optimized_snapshot_id"),
        last_minor_ms=stored.optimized.get("last_minor_ms"),
        last_major_ms=stored.optimized.get("last_major_ms"),
        last_full_ms=stored.optimized.get("last_full_ms"),
        pending=stored.evaluation,
        maintenance=stored.maintenance,
        last_process=stored.history[0] if stored.history else None,
        failure=stored.failure,
    )
    candidates: list[tuple[str, str]] = []
    for ref in (stored.hint, stored.process):
        if ref is not None and ref.dag_id and ref.run_id:
            candidates.append((ref.dag_id, ref.run_id))
    if active_runs is None:
        candidates.extend(_active_runs(session, [dag_id]))
    else:
        candidates.extend(sorted(r for r in active_runs if r[0] == dag_id))
    seen: set[tuple[str, str]] = set()
    for cand in candidates:
        if cand in seen:
            continue
        seen.add(cand)
        if active_runs is not None:
            if cand not in active_runs:
                continue
        elif _run_state(session, *cand) not in _ACTIVE_RUN_STATES:
            continue
        tis = _task_instances(session, *cand)
        recorded = (
            stored.process
            if stored.process and (stored.process.dag_id, stored.process.run_id) == cand
            else None
        )
        kind = recorded.kind if recorded else None
        hint = stored.hint if stored.hint and (stored.hint.dag_id, stored.hint.run_id) == cand else None
        if kind is None and hint is not None:
            kind = hint.kind
        found = _status_of_run(tis, kind, hint)
        if found is None:
            continue
        rt.status, rt.status_since_ms = found[0].value, found[1]
        if found[0] is not TableStatus.PLANNING:
            rt.current_process = (
                _process_from_run(
                    session,
                    conn_id=conn_id,
                    table=table,
                    dag_id=cand[0],
                    run_id=cand[1],
                    tis=tis,
                    recorded=recorded,
                )
                or recorded
            )
        if rt.current_process is not None:
            rt.current_process.status = ProcessStatus.RUNNING.value
        return rt
    status, since = _idle_or_pending(stored)
    rt.status, rt.status_since_ms = status.value, since
    return rt


def _merge_recorded(recorded: ProcessRecord, live: ProcessRecord) -> ProcessRecord:
    """The commit's own record wins for status and totals; live task instances add attempts."""
    merged = ProcessRecord.from_dict(recorded.to_dict())
    by_id = {t.task_id: t for t in live.tasks}
    if not merged.tasks:
        merged.tasks = live.tasks
        return merged
    for task in merged.tasks:
        found = by_id.get(task.task_id)
        if found is not None:
            task.attempts = found.attempts
            task.airflow_state = found.airflow_state
    return merged


# ---- public API -----------------------------------------------------------------------------------


def get_table_runtime(conn_id: str, identifier: str, *, session: Session | None = None) -> TableRuntime:
    """The runtime state of one table, status derived from live task states.

    Args:
        conn_id: catalog connection id.
        identifier: ``namespace.table``.
        session: an Airflow DB session (a new one when omitted).

    Returns:
        The table's :class:`~airflow_provider_amoro.runtime.state.TableRuntime` (IDLE with no
        history when nothing was ever recorded).
    """
    if session is None:
        from airflow.utils.session import create_session

        with create_session() as new_session:
            return get_table_runtime(conn_id, identifier, session=new_session)
    uri = table_asset_uri(conn_id, identifier)
    raw = _load_state(session, [uri])[uri]
    return _build_runtime(session, conn_id, identifier, raw)


def list_table_runtimes(*, session: Session | None = None) -> list[TableRuntime]:
    """Runtime state of every table known to Airflow as an active ``iceberg://`` asset, sorted."""
    if session is None:
        from airflow.utils.session import create_session

        with create_session() as new_session:
            return list_table_runtimes(session=new_session)
    from airflow.models.asset import AssetModel
    from sqlalchemy import select

    uris = sorted(
        set(
            session.scalars(
                select(AssetModel.uri).where(
                    AssetModel.uri.like(f"{ICEBERG_SCHEME}://%"), AssetModel.active.has()
                )
            ).all()
        )
    )
    refs = []
    for uri in uris:
        try:
            ref = parse_table_asset_uri(uri)
        except ValueError:
            continue
        if ref.view is None:
            refs.append(ref)
    state = _load_state(session, [r.uri for r in refs])
    active = _all_active_runs(session)
    return [_build_runtime(session, r.conn_id, r.identifier, state.get(r.uri, {}), active) for r in refs]


def get_optimizing_history(
    conn_id: str, identifier: str, *, limit: int = 20, session: Session | None = None
) -> list[ProcessRecord]:
    """Optimizing processes of a table, newest first, each with its tasks.

    Combines the running process (live), the finished processes recorded by commits, and processes
    of the table's DAG runs that ended without a commit record (e.g. an execute task that failed
    all its retries), rebuilt from their XComs and task instances.

    Args:
        conn_id: catalog connection id.
        identifier: ``namespace.table``.
        limit: at most this many processes.
        session: an Airflow DB session (a new one when omitted).
    """
    if session is None:
        from airflow.utils.session import create_session

        with create_session() as new_session:
            return get_optimizing_history(conn_id, identifier, limit=limit, session=new_session)
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    uri = table_asset_uri(conn_id, identifier)
    raw_state = _load_state(session, [uri])[uri]
    stored = _parse_stored(raw_state)
    identity = raw_state.get(KEY_IDENTITY)
    # a table re-created under this name: the old table's runs of the same DAG are not its history
    since_ms = int(identity.get("since_ms") or 0) if isinstance(identity, dict) else 0
    processes: dict[str, ProcessRecord] = {p.process_id: p for p in stored.history}
    dag_ids = {table_dag_id(conn_id, identifier)}
    if stored.process is not None and stored.process.dag_id:
        dag_ids.add(stored.process.dag_id)
    runs = session.execute(
        select(DagRun.dag_id, DagRun.run_id)
        .where(DagRun.dag_id.in_(sorted(dag_ids)))
        .order_by(DagRun.id.desc())
        .limit(max(limit, 1) * 2)
    ).all()
    for dag_id, run_id in runs:
        pid = f"{dag_id}/{run_id}"
        recorded = processes.get(pid)
        if recorded is None and stored.process is not None and stored.process.process_id == pid:
            recorded = stored.process
        proc = _process_from_run(
            session, conn_id=conn_id, table=identifier, dag_id=dag_id, run_id=run_id, recorded=recorded
        )
        if proc is None:
            continue
        if recorded is not None and recorded.status in (
            ProcessStatus.SUCCESS.value,
            ProcessStatus.FAILED.value,
            ProcessStatus.UNKNOWN.value,
        ):
            proc = _merge_recorded(recorded, proc)
        processes[pid] = proc
    if since_ms:
        processes = {k: p for k, p in processes.items() if (p.plan_time_ms or since_ms) >= since_ms}
    ordered = sorted(processes.values(), key=lambda p: (p.plan_time_ms or 0, p.process_id), reverse=True)
    return ordered[:limit]
