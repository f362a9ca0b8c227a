"""Running a child process from a test: text output captured, the exit code left to the test."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_captured(
    cmd: Sequence[str], *, env: Mapping[str, str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` and return its result; a non-zero exit does not raise (the test asserts on it)."""
    return subprocess.run(
        list(cmd), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
