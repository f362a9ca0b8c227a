"""Shared benchmark machinery: subprocess isolation, RSS sampling, timing, machine facts, catalogs.

Every measured step runs in a fresh Python subprocess (``python -m benchmarks.child``) so that peak
memory is that step's own: a thread samples the process RSS with psutil every few milliseconds
(tracemalloc does not see Arrow's allocator) and ``ru_maxrss`` is reported beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(os.environ.get("AMORO_BENCH_DIR", "/tmp/amoro-bench"))
MB = 1024 * 1024
_MARK = "@@BENCH-RESULT@@"


class Meter:
    """Times one region of a child process and samples its RSS (baseline at region start, peak inside).

    Besides wall seconds it records the process's CPU seconds (user + system, all threads): on a
    shared machine wall time moves with other load, CPU time much less.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.proc = psutil.Process()
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.baseline_rss = 0
        self.peak_rss = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = self.proc.memory_info().rss
            self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(self.interval_s)

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Measure the enclosed block: wall seconds, RSS before it, peak RSS during it."""
        self.baseline_rss = self.proc.memory_info().rss
        self.peak_rss = self.baseline_rss
        self._stop.clear()
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        c0 = self.proc.cpu_times()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds = time.perf_counter() - t0
            c1 = self.proc.cpu_times()
            self.cpu_seconds = (c1.user + c1.system) - (c0.user + c0.system)
            self._stop.set()
            sampler.join()
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)

    def as_dict(self) -> dict[str, Any]:
        """The measurement as JSON-safe data (memory in MiB)."""
        return {
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "load_avg_1m": os.getloadavg()[0],
            "baseline_rss_mb": self.baseline_rss / MB,
            "peak_rss_mb": self.peak_rss / MB,
            "peak_delta_mb": (self.peak_rss - self.baseline_rss) / MB,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def run_child(
    target: str, params: dict[str, Any], *, timeout: float = 900, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``module:function(meter, **params)`` in a fresh interpreter and return its result dict.

    The function gets a :class:`Meter`, does its own setup, wraps the measured work in
    ``meter.timed()`` and returns a dict, which is merged with the meter's figures.
    """
    cmd = [sys.executable, "-m", "benchmarks.child", target, json.dumps(params)]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            result: dict[str, Any] = json.loads(line[len(_MARK) :])
            return result
    raise RuntimeError(
        f"benchmark child {target} failed (rc={proc.returncode}):\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )


def emit(result: dict[str, Any]) -> None:
    """Print a child's result on the marked line :func:`run_child` looks for."""
    print(_MARK + json.dumps(result, default=str), flush=True)


def machine_info() -> dict[str, Any]:
    """Facts about this machine and the library versions that matter for the figures."""
    import pyarrow
    import pyiceberg

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
        "pyiceberg": pyiceberg.__version__,
    }
    for mod in ("deltalake", "datafusion", "duckdb"):
        with contextlib.suppress(ImportError):
            versions[mod] = __import__(mod).__version__
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "versions": versions,
    }


def make_catalog(root: Path, name: str = "bench") -> Any:
    """A pyiceberg SQL catalog on SQLite with its warehouse under ``root`` (created if missing)."""
    from pyiceberg.catalog.sql import SqlCatalog

    (root / "warehouse").mkdir(parents=True, exist_ok=True)
    return SqlCatalog(name, uri=f"sqlite:///{root / 'catalog.db'}", warehouse=(root / "warehouse").as_uri())


def local_path(uri: str) -> str:
    """``file:///x`` -> ``/x``; other strings unchanged."""
    return uri[len("file://") :] if uri.startswith("file://") else uri


def dir_size(paths: list[str]) -> int:
    """Total size in bytes of the given local files."""
    return sum(os.path.getsize(local_path(p)) for p in paths)


def warm(paths: list[str]) -> None:
    """Read files once so every competitor starts from the same (warm) page cache."""
    for p in paths:
        with open(local_path(p), "rb") as fh:
            while fh.read(8 * MB):
                pass


def engine_api() -> Any:
    """The engine's public functions (``evaluate``, ``plan``, ``execute``, ``commit``) as a namespace.

    Taken from ``airflow_provider_amoro.optimizing``; while a name is not exported there yet, from
    its module (``optimizing.plan.plan`` and so on). Raises ImportError when one is missing.
    """
    import importlib
    from types import SimpleNamespace

    package = importlib.import_module("airflow_provider_amoro.optimizing")
    funcs = {}
    for name in ("evaluate", "plan", "execute", "commit"):
        func = getattr(package, name, None)
        if not callable(func):
            func = getattr(importlib.import_module(f"airflow_provider_amoro.optimizing.{name}"), name)
        funcs[name] = func
    return SimpleNamespace(**funcs)
