"""Tests build every catalog through tests/catalogs.py, so one place says how a test catalog looks."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).parent


def test_no_direct_sql_catalog_outside_tests_catalogs() -> None:
    direct = re.compile(r"\bSqlCatalog\(")
    offenders = [
        f"{path.relative_to(TESTS)}:{number}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "catalogs.py" and path != Path(__file__)
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if direct.search(line)
    ]
    assert offenders == [], f"build test catalogs with make_catalog (tests/catalogs.py): {offenders}"
