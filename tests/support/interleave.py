"""Two transactions on real connections, interleaved in a chosen order.

The first runs its statement and keeps its transaction open; the second starts its
statement on a thread of its own and either finishes or waits for the first's locks;
only then does the first commit, and after it the second. Whether the second waited
is observed, not assumed: on PostgreSQL ``pg_blocking_pids`` names the first's
backend; on SQLite, whose writers serialise on one lock, the second has begun its
statement (SQLite's trace hook) and so cannot finish before the first commits.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text

__all__ = ["Interleaving", "Statement", "interleave"]

#: Bounds every wait, so a wedged race fails the test instead of hanging it.
DEADLINE_SECONDS = 30.0
#: How often the first checks, while the second's statement runs, whether it waits on a lock.
POLL_SECONDS = 0.001


@dataclass(frozen=True)
class Statement:
    """One SQL statement with its parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Interleaving:
    """What happened: whether the second statement waited for the first transaction."""

    second_waited: bool = False


def _backend_pid(connection: Connection) -> int | None:
    if connection.dialect.name != "postgresql":
        return None
    return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _trace_statement_start(connection: Connection, started: threading.Event) -> None:
    """On SQLite, set ``started`` once a statement other than BEGIN runs inside the engine."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)

    def trace(statement: str) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            started.set()

    driver.set_trace_callback(trace)


def _stop_tracing(connection: Connection) -> None:
    driver = connection.connection.driver_connection
    if isinstance(driver, sqlite3.Connection):
        driver.set_trace_callback(None)


class _Second(threading.Thread):
    """The second transaction: runs its statement, then commits once told to."""

    def __init__(self, engine: Engine, statement: Statement) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.statement = statement
        self.pid: int | None = None
        self.started = threading.Event()
        self.finished = threading.Event()
        self.may_commit = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.engine.connect() as connection, connection.begin():
                self.pid = _backend_pid(connection)
                if connection.dialect.name == "sqlite":
                    _trace_statement_start(connection, self.started)
                else:
                    self.started.set()
                try:
                    connection.execute(text(self.statement.sql), self.statement.params)
                finally:
                    _stop_tracing(connection)
                self.finished.set()
                if not self.may_commit.wait(DEADLINE_SECONDS):
                    raise TimeoutError("the first transaction never committed")
        except BaseException as exc:
            self.error = exc
        finally:
            self.started.set()
            self.finished.set()


def _wait_until_blocked_or_finished(engine: Engine, first_pid: int | None, second: _Second) -> bool:
    """Return True once the second statement waits on the first, False if it finished."""
    if not second.started.wait(DEADLINE_SECONDS):
        raise TimeoutError("the second statement never started")
    if first_pid is None:
        return not second.finished.is_set()
    deadline = time.monotonic() + DEADLINE_SECONDS
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as monitor:
        while not second.finished.wait(POLL_SECONDS):
            blocked = monitor.execute(
                text("SELECT CAST(:first AS integer) = ANY(pg_blocking_pids(:second))"),
                {"first": first_pid, "second": second.pid},
            ).scalar_one()
            if blocked:
                return True
            if time.monotonic() > deadline:
                raise TimeoutError("the second statement neither finished nor waited")
    return False


def interleave(engine: Engine, first: Statement, second: Statement) -> Interleaving:
    """Run ``first``, then ``second`` until it waits or finishes, then commit both in order.

    An error in either transaction (a deadlock, say) is raised here.
    """
    second_tx = _Second(engine, second)
    with engine.connect() as connection:
        transaction = connection.begin()
        first_pid = _backend_pid(connection)
        connection.execute(text(first.sql), first.params)
        second_tx.start()
        try:
            waited = _wait_until_blocked_or_finished(engine, first_pid, second_tx)
            transaction.commit()
        finally:
            if transaction.is_active:
                transaction.rollback()
            second_tx.may_commit.set()
    second_tx.join(DEADLINE_SECONDS)
    if second_tx.is_alive():
        raise TimeoutError("the second transaction did not end")
    if second_tx.error is not None:
        raise second_tx.error
    return Interleaving(second_waited=waited)
