"""Failed optimizing in a generated table DAG: a failed run, a recorded reason, a growing backoff.

Three small callables the builder attaches to the table DAG's tasks:

- :class:`OptimizingFailureRecorder` (``on_failure_callback`` of evaluate, plan, execute and
  commit): records the failing task and its error in the table's runtime state
  (``amoro.failure``: count, reason, next attempt), like Amoro records the plan time of a failed
  process so the next one waits.
- :class:`OptimizingBackoffCheck` (``pre_execute`` of evaluate): while the backoff of the last
  failure runs, the optimizing pipeline is skipped (maintenance still runs).
- :class:`OptimizingOutcome` (the ``optimizing_failed`` task, trigger rule ``one_failed``):
  fails the DAG run with the recorded reason, so a table whose optimizing failed never looks green.

A commit that succeeds, or an evaluation that finds nothing to do, clears the record
(:class:`OptimizingFailureClearer`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow_provider_amoro.runtime.state import KEY_FAILURE

OUTCOME_TASK_ID = "optimizing_failed"
"""Task id of the task that fails the run when optimizing failed."""

_REASON_LIMIT = 2000


def backoff_for(failures: int, initial: timedelta, maximum: timedelta) -> timedelta:
    """``initial * 2**(failures - 1)``, at most ``maximum`` (no wait before the first failure)."""
    if failures <= 0:
        return timedelta(0)
    seconds = initial.total_seconds() * (2 ** min(failures - 1, 40))
    return timedelta(seconds=min(seconds, maximum.total_seconds()))


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _now_ms() -> int:
    return int(dt.datetime.now(tz=dt.timezone.utc).timestamp() * 1000)


def _recorder(context: Mapping[str, Any], asset_uri: str) -> Any:
    from airflow_provider_amoro.runtime.recorder import TableStateRecorder

    return TableStateRecorder(context, asset_uri)


def _failure(recorder: Any) -> dict[str, Any]:
    raw = recorder.get(KEY_FAILURE)
    return dict(raw) if isinstance(raw, dict) else {}


class OptimizingFailureRecorder:
    """``on_failure_callback``: record why optimizing failed and when it may be tried again.

    Args:
        asset_uri: the table asset's URI.
        initial: backoff after the first failure.
        maximum: the cap of the growing backoff.
    """

    def __init__(self, asset_uri: str, initial: timedelta, maximum: timedelta) -> None:
        self.asset_uri = asset_uri
        self.initial = initial
        self.maximum = maximum

    def __call__(self, context: Mapping[str, Any]) -> None:
        """Increment the table's failure count, store the reason and the next attempt time."""
        recorder = _recorder(context, self.asset_uri)
        ti = context.get("ti")
        run_id = str(getattr(ti, "run_id", ""))
        previous = _failure(recorder)
        # Several tasks of one run may fail (mapped execute tasks): one run is one failure.
        count = int(previous.get("count") or 0)
        if previous.get("run_id") != run_id:
            count += 1
        error = context.get("exception")
        reason = f"{type(error).__name__}: {error}" if error is not None else "failed"
        now = _now_ms()
        wait = backoff_for(count, self.initial, self.maximum)
        recorder.set(
            KEY_FAILURE,
            {
                "count": count,
                "task_id": str(getattr(ti, "task_id", "")),
                "map_index": getattr(ti, "map_index", -1),
                "dag_id": str(getattr(ti, "dag_id", "")),
                "run_id": run_id,
                "reason": reason[:_REASON_LIMIT],
                "failed_ms": now,
                "next_attempt_ms": now + int(wait.total_seconds() * 1000),
            },
        )


class OptimizingFailureClearer:
    """``on_success_callback`` of commit and evaluate: a commit, or nothing to do, ends the backoff.

    Args:
        asset_uri: the table asset's URI.
        only_when_idle: clear only when the task's result says nothing is pending (evaluate).
    """

    def __init__(self, asset_uri: str, *, only_when_idle: bool = False) -> None:
        self.asset_uri = asset_uri
        self.only_when_idle = only_when_idle

    def __call__(self, context: Mapping[str, Any]) -> None:
        """Remove the failure record (when there is one)."""
        if self.only_when_idle:
            ti = context.get("ti")
            result = ti.xcom_pull(task_ids=ti.task_id, key="return_value") if ti is not None else None
            if not isinstance(result, Mapping) or result.get("kind") is not None:
                return
        recorder = _recorder(context, self.asset_uri)
        if _failure(recorder):
            recorder.set(KEY_FAILURE, {})


class OptimizingBackoffCheck:
    """``pre_execute`` of evaluate: skip the optimizing pipeline while the last failure's backoff runs.

    Args:
        asset_uri: the table asset's URI.
    """

    def __init__(self, asset_uri: str) -> None:
        self.asset_uri = asset_uri

    def __call__(self, context: Mapping[str, Any]) -> None:
        """Raise ``AirflowSkipException`` before the recorded next attempt time."""
        from airflow.sdk.exceptions import AirflowSkipException

        failure = _failure(_recorder(context, self.asset_uri))
        next_ms = int(failure.get("next_attempt_ms") or 0)
        if failure.get("count") and _now_ms() < next_ms:
            raise AirflowSkipException(
                f"optimizing failed {failure['count']} time(s) in a row (last: {failure.get('task_id')}: "
                f"{failure.get('reason')}); backing off until {_iso(next_ms)}"
            )


class OptimizingOutcome:
    """The ``optimizing_failed`` task: runs only when a pipeline task failed, and fails the run.

    Args:
        asset_uri: the table asset's URI.
        table: ``namespace.table`` (for the message).
    """

    def __init__(self, asset_uri: str, table: str) -> None:
        self.asset_uri = asset_uri
        self.table = table
        self.__name__ = OUTCOME_TASK_ID

    def __call__(self, **context: Any) -> None:
        """Raise ``AirflowFailException`` naming the failed task, its error and the next attempt."""
        from airflow.sdk.exceptions import AirflowFailException

        failure = _failure(_recorder(context, self.asset_uri))
        ti = context.get("ti")
        if failure and failure.get("run_id") == getattr(ti, "run_id", None):
            next_ms = int(failure.get("next_attempt_ms") or 0)
            raise AirflowFailException(
                f"optimizing of {self.table} failed in task {failure.get('task_id')!r}: "
                f"{failure.get('reason')} (failure {failure.get('count')} in a row; next attempt not "
                f"before {_iso(next_ms)})"
            )
        raise AirflowFailException(
            f"optimizing of {self.table} failed (a pipeline task of this run failed; see its log)"
        )
