"""Feature code never learns which database it runs on: dialect code lives in db/ alone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "bookingguard"
FEATURES = ("booking", "monitoring")
#: A database's or a driver's name, in code, strings or comments.
DIALECT_WORDS = re.compile(r"postgres|sqlite|dialect|psycopg|asyncpg|aiosqlite", re.IGNORECASE)
#: Modules whose import ties code to one database.
DIALECT_MODULES = ("sqlalchemy.dialects", "psycopg", "psycopg_pool", "sqlite3", "asyncpg")
#: Calls that write SQL as text rather than build it.
RAW_SQL = frozenset({"text", "exec_driver_sql", "literal_column"})


def _feature_files() -> list[Path]:
    return sorted(path for feature in FEATURES for path in (SOURCE / feature).rglob("*.py"))


def _named(path: Path) -> str:
    return str(path.relative_to(SOURCE))


def dialect_lines(source: str) -> list[str]:
    """The lines of ``source`` that name a database, a driver or a dialect."""
    return [
        f"{number}: {line.strip()}"
        for number, line in enumerate(source.splitlines(), start=1)
        if DIALECT_WORDS.search(line)
    ]


def dialect_imports(source: str) -> list[str]:
    """The dialect modules and drivers that ``source`` imports."""
    imported: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.append(node.module)
    return [name for name in imported if name.startswith(DIALECT_MODULES)]


def raw_sql_calls(source: str) -> list[int]:
    """The lines of ``source`` that call ``text()``, ``exec_driver_sql`` or ``literal_column``."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id in RAW_SQL)
            or (isinstance(node.func, ast.Attribute) and node.func.attr in RAW_SQL)
        )
    ]


def test_the_features_have_sources() -> None:
    """The checks below read the feature packages (an empty list would pass vacuously)."""
    assert {path.relative_to(SOURCE).parts[0] for path in _feature_files()} == set(FEATURES)


@pytest.mark.parametrize("path", _feature_files(), ids=_named)
def test_feature_module_names_no_dialect(path: Path) -> None:
    """booking/ and monitoring/ name no database, driver or dialect, not even in a comment."""
    assert dialect_lines(path.read_text()) == []


@pytest.mark.parametrize("path", _feature_files(), ids=_named)
def test_feature_module_imports_nothing_dialect_specific(path: Path) -> None:
    """booking/ and monitoring/ import no dialect module and no driver."""
    assert dialect_imports(path.read_text()) == []


@pytest.mark.parametrize("path", _feature_files(), ids=_named)
def test_feature_module_writes_no_raw_sql(path: Path) -> None:
    """booking/ and monitoring/ build statements with SQLAlchemy or call db/: no SQL text."""
    assert raw_sql_calls(path.read_text()) == []


def test_the_checks_see_what_dialect_code_looked_like() -> None:
    """Each check flags the way dialect code was written in these packages before."""
    before = "\n".join(
        [
            "from sqlalchemy.dialects import sqlite",
            "from bookingguard.db.async_pg import AsyncPostgres",
            'if session.get_bind().dialect.name == "postgresql":',
            "    # On PostgreSQL the rules run beside the scan",
            "    session.execute(text(\"SELECT set_config('plan_cache_mode', 'x', true)\"))",
        ]
    )
    assert len(dialect_lines(before)) == 4
    assert dialect_imports(before) == ["sqlalchemy.dialects"]
    assert raw_sql_calls(before) == [5]
