"""The monitoring package never learns which database it runs on: that lives in ``db/``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bookingguard.monitoring

PACKAGE = Path(bookingguard.monitoring.__file__).parent
DATABASE_NAMES = re.compile(r"postgres|sqlite|dialect|psycopg", re.IGNORECASE)


def test_no_database_name_in_the_monitoring_sources() -> None:
    """No line of monitoring/ (code, comment or docstring) names a database or a dialect."""
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if DATABASE_NAMES.search(line)
    ]
    assert found == []


def test_no_raw_sql_in_the_monitoring_sources() -> None:
    """monitoring/ builds its statements with SQLAlchemy: no text() and no driver SQL."""
    raw = {"text", "exec_driver_sql", "literal_column"}
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id in raw)
            or (isinstance(node.func, ast.Attribute) and node.func.attr in raw)
        )
    ]
    assert found == []
