"""What the monitor asks of the database where PostgreSQL and SQLite do it differently.

Each function is the engine's ``Dialect`` operation (``db/dialects``), named by what it
does, so that the monitor states what it needs and never learns which database it runs
on: id lists bound as one parameter, the run's planner settings, and whether a second
connection runs its statement beside the first. See ``docs/architecture.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import TextualSelect
from sqlalchemy.orm import Session

from bookingguard.db.dialects import Bind, dialect_of

__all__ = ["IdLists", "bound_ids", "id_lists", "runs_side_statements", "tune_monitor_transaction"]


class IdLists(Protocol):
    """Ids bound as one parameter (an array), not one parameter per id.

    Ten thousand ids as ten thousand parameters cost about 100 ms to render, bind and plan
    before the statement does anything; one parameter costs nothing. Hashable: a statement
    built once per ``IdLists`` is cached on it.
    """

    def __hash__(self) -> int: ...

    def ids_parameter(
        self, name: str, *, unique: bool = False, value: object = None
    ) -> TextualSelect:
        """A one-column select (``id``) of the ids bound to parameter ``name``."""
        ...

    def ids_value(self, ids: Sequence[int]) -> object:
        """What parameter ``name`` of ``ids_parameter(name)`` is given for ``ids``."""
        ...

    def bound_ids(self, ids: Sequence[int]) -> TextualSelect:
        """``ids`` as a one-column select (``id``) bound as one parameter."""
        ...


def id_lists(bind: Bind) -> IdLists:
    """How the database behind ``bind`` takes a list of ids as one parameter."""
    return dialect_of(bind)


def bound_ids(bind: Bind, ids: Sequence[int]) -> TextualSelect:
    """``ids`` as a one-column select (``id``) bound as one parameter, for ``bind``."""
    return dialect_of(bind).bound_ids(ids)


def tune_monitor_transaction(session: Session) -> None:
    """Planner settings for the monitor run in ``session``'s transaction (none without a planner).

    They end with the transaction: see ``Dialect.tune_monitor_transaction`` for what they
    are and what they were measured to save.
    """
    dialect_of(session).tune_monitor_transaction(session)


def runs_side_statements(bind: Bind) -> bool:
    """Whether a statement on a second connection runs while ``bind``'s runs, not after it."""
    return dialect_of(bind).runs_side_statements
