"""The six I/O counters of an optimizing task or process: one type for every layer.

The engine (:mod:`airflow_provider_amoro.optimizing`, which re-exports :class:`IOCounters`), the
runtime records (:mod:`airflow_provider_amoro.runtime.state`) and the UI use these names. This
module imports nothing heavy, so the runtime records, the operators and the DAG factory load
without pyiceberg and pyarrow (a DAG file is parsed again and again; the engine loads in the tasks
that run it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_amoro.optimizing.model import RewriteTask, TaskResult


@dataclass(kw_only=True)
class IOCounters:
    """The six I/O counters of an optimizing task or process (one type for every layer).

    Runtime records (:mod:`airflow_provider_amoro.runtime.state`) and :class:`OptimizeResult`
    inherit these fields, so the counters have one name each everywhere: in XCom, in the runtime
    state, in the UI's API.

    Attributes:
        input_files: files read (data and delete files).
        input_bytes: bytes of those files.
        input_records: live records read (after deletes).
        output_files: files written (data files and rewrite-pos delete files).
        output_bytes: bytes written.
        output_records: records written to data files.
    """

    input_files: int = 0
    input_bytes: int = 0
    input_records: int = 0
    output_files: int = 0
    output_bytes: int = 0
    output_records: int = 0

    def counters(self) -> IOCounters:
        """Just the six counters (of a record that inherits them)."""
        return IOCounters(**{name: getattr(self, name) for name in IO_COUNTER_NAMES})

    def set_counters(self, counters: IOCounters) -> None:
        """Overwrite the six counters with ``counters``."""
        for name in IO_COUNTER_NAMES:
            setattr(self, name, getattr(counters, name))

    def counters_dict(self) -> dict[str, int]:
        """The six counters as a dict (field name -> value)."""
        return {name: int(getattr(self, name)) for name in IO_COUNTER_NAMES}

    def __add__(self, other: IOCounters) -> IOCounters:
        return IOCounters(**{n: getattr(self, n) + getattr(other, n) for n in IO_COUNTER_NAMES})

    @classmethod
    def planned(cls, task: RewriteTask) -> IOCounters:
        """What a task will read, as planned: its input files and their bytes."""
        files = [*task.rewrite_data_files, *task.rewrite_pos_data_files, *task.delete_files]
        return cls(input_files=len(files), input_bytes=sum(f.size_bytes for f in files))

    @classmethod
    def of_result(cls, result: TaskResult) -> IOCounters:
        """What an executed task read and wrote."""
        return cls(
            input_files=result.input_files,
            input_bytes=result.input_bytes,
            input_records=result.input_records,
            output_files=len(result.outputs),
            output_bytes=result.output_bytes,
            output_records=result.output_records,
        )

    @classmethod
    def total(cls, parts: Iterable[IOCounters]) -> IOCounters:
        """Sum of counters (the per-process totals)."""
        out = cls()
        for part in parts:
            out = out + part
        return out

    @classmethod
    def of_results(cls, results: Iterable[TaskResult]) -> IOCounters:
        """Totals over executed tasks: the one per-task totals computation."""
        return cls.total(cls.of_result(r) for r in results)


#: Field names of :class:`IOCounters`, in order.
IO_COUNTER_NAMES: tuple[str, ...] = (
    "input_files",
    "input_bytes",
    "input_records",
    "output_files",
    "output_bytes",
    "output_records",
)
