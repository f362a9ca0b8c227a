"""The one vocabulary: kinds parse with one wording, the action table is consistent, nobody respells."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from airflow_provider_amoro import properties as p
from airflow_provider_amoro.properties import MAINTENANCE_ACTIONS, OptimizingKind

PACKAGE = Path(__file__).resolve().parents[1] / "airflow_provider_amoro"


@pytest.mark.parametrize("raw", ["minor", "MAJOR", " Full "])
def test_kinds_parse_in_any_case(raw: str) -> None:
    kind = OptimizingKind.parse(raw)
    assert kind is not None and kind.value == raw.strip().lower()
    assert kind == raw.strip().lower()  # a str enum: compares equal to its value
    assert str(kind) == kind.value


def test_auto_means_decide_only_where_allowed() -> None:
    assert OptimizingKind.parse("auto", allow_auto=True) is None
    assert OptimizingKind.parse(None) is None
    with pytest.raises(
        ValueError, match=r"unknown optimizing kind 'auto'; expected one of: minor, major, full$"
    ):
        OptimizingKind.parse("auto")
    with pytest.raises(ValueError, match=r"'mega'; expected one of: minor, major, full, auto$"):
        OptimizingKind.parse("mega", allow_auto=True)


def test_maintenance_table_names_real_properties() -> None:
    names = [a.name for a in MAINTENANCE_ACTIONS]
    assert len(names) == len(set(names))
    defined = {v for k, v in vars(p).items() if k.isupper() and isinstance(v, str)}
    for action in MAINTENANCE_ACTIONS:
        assert action.enabled_property in defined
        assert action.default_interval.total_seconds() > 0
    assert [a.name for a in MAINTENANCE_ACTIONS if not a.gc_controlled] == ["create_tags"]


def _string_constants(tree: ast.AST) -> list[ast.Constant]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def test_every_property_has_one_definition() -> None:
    """Property names appear as string literals in properties.py only (docstrings aside)."""
    prefixes = "|".join(re.escape(x) for x in p.AMORO_PROPERTY_PREFIXES)
    name = re.compile(rf"^(?:{prefixes})[a-z0-9.-]+$")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "properties.py":
            continue
        for node in _string_constants(ast.parse(path.read_text())):
            if name.match(node.value):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value}")
    assert offenders == [], "spell these through airflow_provider_amoro.properties:\n" + "\n".join(offenders)
