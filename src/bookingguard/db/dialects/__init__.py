"""What differs between PostgreSQL and SQLite, behind one interface.

Feature code (``booking``, ``monitoring``) never asks which database it runs on: it
asks ``dialect_of(bind)`` for the operation and gets the implementation for the
engine's dialect, chosen in this one place. See ``docs/architecture.md``.
"""

from __future__ import annotations

from bookingguard.db.dialects.base import Bind, Dialect
from bookingguard.db.dialects.postgresql import PostgresDialect
from bookingguard.db.dialects.sqlite import SqliteDialect

__all__ = ["Bind", "Dialect", "PostgresDialect", "SqliteDialect", "dialect_of"]

_BY_NAME: dict[str, Dialect] = {
    PostgresDialect.name: PostgresDialect(),
    SqliteDialect.name: SqliteDialect(),
}


def dialect_of(bind: Bind) -> Dialect:
    """The operations for the database behind ``bind`` (an engine, connection or session)."""
    engine_dialect = bind.get_bind().dialect if hasattr(bind, "get_bind") else bind.dialect
    try:
        return _BY_NAME[engine_dialect.name]
    except KeyError:
        raise ValueError(f"unsupported database dialect: {engine_dialect.name!r}") from None
