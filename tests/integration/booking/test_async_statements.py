"""The booking path's statements on the async engine's pooled psycopg connections (PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from bookingguard.db import make_engine
from bookingguard.db.async_engine import make_async_engine
from bookingguard.db.async_statements import AsyncStatements
from tests.conftest import TestDatabase


@pytest.fixture
async def statements(postgres_database: TestDatabase) -> AsyncIterator[AsyncStatements]:
    engine = make_async_engine(postgres_database.engine)
    try:
        yield AsyncStatements(engine)
    finally:
        await engine.dispose()


async def _backend_pid(statements: AsyncStatements) -> int:
    async with statements.connection() as connection:
        row = await statements.first(connection, select(func.pg_backend_pid()), {})
    assert row is not None
    return int(row[0])


def _terminate(database: TestDatabase, pid: int) -> None:
    admin = make_engine(database.url, pool=False)
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


async def test_a_connection_broken_under_a_statement_is_sqlalchemys_error_and_dropped(
    statements: AsyncStatements, postgres_database: TestDatabase
) -> None:
    """A backend killed moments after use fails the next statement with SQLAlchemy's
    OperationalError; the pool then hands out another connection, never the broken one."""
    pid = await _backend_pid(statements)
    _terminate(postgres_database, pid)
    with pytest.raises(OperationalError):
        await _backend_pid(statements)
    assert await _backend_pid(statements) != pid


async def test_a_unique_violation_is_sqlalchemys_integrity_error(
    statements: AsyncStatements,
) -> None:
    """A duplicate key is IntegrityError, as the booking path expects, and the connection lives."""
    insert = text("INSERT INTO customers (name) VALUES ('a') RETURNING id")
    duplicate = text("INSERT INTO customers (id, name) VALUES (:id, 'b')")
    async with statements.connection() as connection:
        row = await statements.first(connection, insert, {})
        assert row is not None
        with pytest.raises(IntegrityError):
            await statements.first(connection, duplicate, {"id": row[0]})
        assert await statements.first(connection, select(func.count()), {}) == (1,)
    assert statements.statements == 3


async def test_one_statement_runs_with_each_runs_parameters(
    statements: AsyncStatements,
) -> None:
    """A statement built once binds the parameters of each run, not those of the first."""
    plus_one = text("SELECT CAST(:v AS int) + 1")
    async with statements.connection() as connection:
        first = await statements.first(connection, plus_one, {"v": 1})
        second = await statements.first(connection, plus_one, {"v": 41})
    assert (first, second) == ((2,), (42,))
