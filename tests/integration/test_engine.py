"""Engine settings the rest of the system relies on."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from bookingguard.db.engine import SQLITE_BEGIN_OPTION
from tests.conftest import TestDatabase


def test_sqlite_uses_foreign_keys_and_wal(sqlite_database: TestDatabase) -> None:
    """SQLite connections enforce foreign keys and the file is in WAL mode."""
    with sqlite_database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


def test_foreign_keys_are_enforced(database: TestDatabase) -> None:
    """A review item for a call that does not exist is rejected on both dialects."""
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO manual_review_queue (call_id, reason, priority, status) "
                "VALUES (424242, 'x', 1, 'pending')"
            )
        )


def test_sqlite_immediate_transactions(sqlite_database: TestDatabase) -> None:
    """The sqlite_begin option opens BEGIN IMMEDIATE: a second writer cannot start meanwhile."""
    engine = sqlite_database.engine
    first = engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    second = engine.connect()
    second.connection.driver_connection.execute("PRAGMA busy_timeout = 50")  # type: ignore[union-attr]
    try:
        first.begin()
        first.execute(text("SELECT 1"))
        with pytest.raises(Exception, match="locked"):
            second.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        first.rollback()
        first.close()
        second.close()
