"""The unit of work: the one owner of a transaction (cosmicpython's pattern)."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.engine import SQLITE_BEGIN_OPTION

__all__ = ["UnitOfWork", "session_factory"]


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (services return them).

    On SQLite every session opens with ``BEGIN IMMEDIATE``: a deferred transaction that
    reads and then writes fails at once with "database is locked" when another process
    wrote in between (the busy timeout cannot help it), so several processes (``serve``
    and ``worker`` replicas) sharing one SQLite file take the write lock up front and
    wait their turn instead. PostgreSQL ignores the option.
    """
    return sessionmaker(
        engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}), expire_on_commit=False
    )


class UnitOfWork:
    """Opens a session; ``commit()`` is the only commit, leaving without it rolls back.

    Services take a unit of work and ``flush()`` at most; whoever opened it commits.
    """

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self._sessions = sessions
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("unit of work used outside its 'with' block")
        return self._session

    def __enter__(self) -> Self:
        self._session = self._sessions()
        self._session.begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # close() rolls back whatever was not committed and detaches loaded objects
        # without expiring them, so values read inside the block stay readable.
        self.session.close()
        self._session = None

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()
