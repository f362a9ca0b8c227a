"""A task allocates Arrow memory from the system allocator, and the process's default comes back."""

from __future__ import annotations

import pyarrow as pa
import pytest

from airflow_provider_amoro.optimizing.execute import _task_memory_pool


def test_tasks_use_the_system_pool_and_restore_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    before = pa.default_memory_pool().backend_name
    with _task_memory_pool():
        assert pa.default_memory_pool().backend_name == "system"
        with _task_memory_pool():  # a second task at once (two pool slots in one process)
            assert pa.default_memory_pool().backend_name == "system"
        assert pa.default_memory_pool().backend_name == "system"  # the first one still runs
        data = pa.array(range(1000))
    assert pa.default_memory_pool().backend_name == before
    assert data.sum().as_py() == 499500  # a buffer of the task's pool outlives the task


def test_an_explicit_arrow_pool_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    before = pa.default_memory_pool().backend_name
    with _task_memory_pool():
        assert pa.default_memory_pool().backend_name == before
