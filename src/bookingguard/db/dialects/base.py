"""``Dialect``: the operations whose SQL differs between the two databases."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import BigInteger, Connection, Engine, Table, TextualSelect, bindparam, column, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

__all__ = ["Bind", "Dialect"]

#: Anything a dialect can be read from.
Bind = Engine | Connection | Session


class Dialect(ABC):
    """One database's way of doing what bookingguard needs done differently per database."""

    #: SQLAlchemy's name for the dialect.
    name: ClassVar[str]
    #: Whether a statement on a second connection runs at the same time as one on the
    #: first (PostgreSQL), rather than waiting for it (SQLite: one file, one writer).
    runs_side_statements: ClassVar[bool]

    @abstractmethod
    def insert_or_ignore(self, table: Table, *, conflict_columns: Sequence[str]) -> Insert:
        """``INSERT`` into ``table`` that skips rows conflicting on ``conflict_columns``."""

    @abstractmethod
    def ids_rows(self, name: str) -> str:
        """SQL selecting one ``id`` column from the ids bound to parameter ``name``."""

    @abstractmethod
    def ids_value(self, ids: Sequence[int]) -> object:
        """What a parameter of ``ids_parameter`` is given for ``ids``."""

    def ids_parameter(
        self, name: str, *, unique: bool = False, value: object = None
    ) -> TextualSelect:
        """A one-column select (``id``) of the ids bound to parameter ``name``.

        Ten thousand ids as ten thousand parameters cost about 100 ms to render, bind and
        plan before the statement does anything; one array parameter costs nothing. For a
        statement built once and run with its parameters (give ``ids_value(ids)``).
        """
        return (
            text(self.ids_rows(name))
            .bindparams(bindparam(name, value=value, unique=unique))
            .columns(column("id", BigInteger))
        )

    def bound_ids(self, ids: Sequence[int]) -> TextualSelect:
        """``ids`` as a one-column select (``id``) bound as one parameter."""
        return self.ids_parameter("ids", unique=True, value=self.ids_value(ids))

    def tune_monitor_transaction(self, session: Session) -> None:  # noqa: B027
        """Planner settings for a monitor run's transaction; nothing where there is no planner."""
