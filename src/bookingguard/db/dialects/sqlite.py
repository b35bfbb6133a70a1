"""SQLite's implementation of ``Dialect``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.dml import Insert

from bookingguard.db.dialects.base import Dialect

__all__ = ["SqliteDialect"]


class SqliteDialect(Dialect):
    """No arrays (a JSON array read by ``json_each``), ``ON CONFLICT``, one writer."""

    name: ClassVar[str] = "sqlite"
    runs_side_statements: ClassVar[bool] = False

    def insert_or_ignore(self, table: Table, *, conflict_columns: Sequence[str]) -> Insert:
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))

    def ids_rows(self, name: str) -> str:
        return f"SELECT value AS id FROM json_each(:{name})"

    def ids_value(self, ids: Sequence[int]) -> object:
        return json.dumps(list(ids))
