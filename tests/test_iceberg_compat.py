"""pyiceberg's private API is used in one module only: ``airflow_provider_amoro/iceberg_compat.py``.

pyiceberg is pinned exactly; an upgrade must only need that module checked. This test reads every
module of the package and fails on a private pyiceberg import (``from pyiceberg.x import _y`` or a
private module path) or a call of a private pyiceberg method the compat module wraps.
"""

from __future__ import annotations

import ast
from pathlib import Path

import airflow_provider_amoro

PACKAGE = Path(airflow_provider_amoro.__file__).resolve().parent
COMPAT = PACKAGE / "iceberg_compat.py"
#: Private pyiceberg methods wrapped by the compat module (calling them elsewhere is a violation).
WRAPPED_METHODS = {"_apply", "_do_commit"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pyiceberg":
            private = [a.name for a in node.names if a.name.startswith("_")]
            if private or any(part.startswith("_") for part in (node.module or "").split(".")):
                out.append(
                    f"{path.name}:{node.lineno} from {node.module} import {', '.join(private) or '...'}"
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "pyiceberg" and any(p.startswith("_") for p in parts):
                    out.append(f"{path.name}:{node.lineno} import {alias.name}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in WRAPPED_METHODS
        ):
            out.append(f"{path.name}:{node.lineno} .{node.func.attr}(...)")
    return out


def test_private_pyiceberg_api_only_in_the_compat_module() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != COMPAT:
            found += [f"{path.relative_to(PACKAGE)}: {v}" for v in _violations(path)]
    assert found == [], "private pyiceberg API outside iceberg_compat.py:\n" + "\n".join(found)


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from pyiceberg.io.pyarrow import _determine_partitions, schema_to_pyarrow\n"
        "import pyiceberg.table._private\n"
        "tx._apply((), ())\n"
        "from pyiceberg.io.pyarrow import schema_to_pyarrow\n"
    )
    assert len(_violations(sample)) == 3
    assert _violations(COMPAT) != []  # the compat module itself is where they live
