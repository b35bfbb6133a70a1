"""Two transactions on real connections, their statements interleaved in a chosen order.

Each transaction runs on a thread of its own. Their statements (writes) go in turn:
the first's first, the second's first, the first's second, and so on; the schedule
moves on once a statement has finished or waits for the other transaction. Then the
first commits, and after it the second. Whether a statement waited is observed, not
assumed: on PostgreSQL ``pg_blocking_pids`` names the other backend. SQLite's writers
serialise on one lock that a transaction holds from its first write to its end, so
there a write waits exactly when the other transaction has written and not yet ended;
the statement is seen to have begun inside the engine (SQLite's trace hook).
"""

from __future__ import annotations

import itertools
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Engine, text

__all__ = ["Interleaving", "Statement", "interleave"]

#: Bounds every wait, so a wedged race fails the test instead of hanging it.
DEADLINE_SECONDS = 30.0
#: How often the driver checks, while a statement runs, whether it waits on a lock.
POLL_SECONDS = 0.001


@dataclass(frozen=True)
class Statement:
    """One SQL statement (a write) with its parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Interleaving:
    """Which of each transaction's statements waited for the other transaction."""

    first_waited: tuple[bool, ...]
    second_waited: tuple[bool, ...]


class _Step:
    def __init__(
        self, action: Literal["execute", "commit", "rollback"], statement: Statement | None = None
    ) -> None:
        self.action = action
        self.statement = statement
        self.started = threading.Event()
        self.finished = threading.Event()


class _Transaction(threading.Thread):
    """One transaction on its own connection, running the steps it is given in order."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.steps: queue.Queue[_Step] = queue.Queue()
        self.current: _Step | None = None
        self.pid: int | None = None
        self.wrote = False
        self.ended = False
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def submit(self, step: _Step) -> _Step:
        self.steps.put(step)
        return step

    def run(self) -> None:
        try:
            with self.engine.connect() as connection:
                self._run(connection)
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended = True
            self.ready.set()
            if self.current is not None:
                self.current.started.set()
                self.current.finished.set()

    def _run(self, connection: Connection) -> None:
        transaction = connection.begin()
        if connection.dialect.name == "postgresql":
            self.pid = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
        driver = connection.connection.driver_connection
        tracing = isinstance(driver, sqlite3.Connection)
        if isinstance(driver, sqlite3.Connection):
            driver.set_trace_callback(self._trace)
        self.ready.set()
        try:
            while True:
                step = self.current = self.steps.get(timeout=DEADLINE_SECONDS)
                if step.action == "commit":
                    transaction.commit()
                    return
                if step.action == "rollback":
                    transaction.rollback()
                    return
                if not tracing:
                    step.started.set()
                assert step.statement is not None
                connection.execute(text(step.statement.sql), step.statement.params)
                self.wrote = True
                step.finished.set()
        finally:
            if isinstance(driver, sqlite3.Connection):
                driver.set_trace_callback(None)

    def _trace(self, statement: str) -> None:
        if self.current is not None and not statement.lstrip().upper().startswith("BEGIN"):
            self.current.started.set()


def _settle(
    step: _Step, runner: _Transaction, other: _Transaction, monitor: Connection | None
) -> bool:
    """Wait until ``step`` has finished (False) or waits for ``other`` (True)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not step.started.wait(POLL_SECONDS):
        earlier = runner.current
        if earlier is not None and earlier is not step and not earlier.finished.is_set():
            return True  # queued behind an earlier statement of its own, which waits
        if time.monotonic() > deadline:
            raise TimeoutError("a statement never started")
    if monitor is None and other.wrote and not other.ended:
        return not step.finished.is_set()
    while not step.finished.wait(POLL_SECONDS):
        if (
            monitor is not None
            and monitor.execute(
                text("SELECT CAST(:holder AS integer) = ANY(pg_blocking_pids(:waiting))"),
                {"holder": other.pid, "waiting": runner.pid},
            ).scalar_one()
        ):
            return True
        if time.monotonic() > deadline:
            raise TimeoutError("a statement neither finished nor waited")
    return False


def _end(
    transactions: tuple[_Transaction, _Transaction], action: Literal["commit", "rollback"]
) -> None:
    """End the first transaction, then the second, each once its statements are through."""
    for transaction in transactions:
        transaction.submit(_Step(action))
        transaction.join(DEADLINE_SECONDS)


def interleave(
    engine: Engine, first: Sequence[Statement], second: Sequence[Statement]
) -> Interleaving:
    """Run ``first`` and ``second`` as two transactions, statements in turn, then commit
    the first and then the second. An error in either (a deadlock, say) is raised here."""
    transactions = (_Transaction(engine), _Transaction(engine))
    waited: tuple[list[bool], list[bool]] = ([], [])
    for transaction in transactions:
        transaction.start()
        transaction.ready.wait(DEADLINE_SECONDS)
    postgres = engine.dialect.name == "postgresql"
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            monitor = connection if postgres else None
            for pair in itertools.zip_longest(first, second):
                for index, statement in enumerate(pair):
                    if statement is None:
                        continue
                    runner, other = transactions[index], transactions[1 - index]
                    step = runner.submit(_Step("execute", statement))
                    waited[index].append(_settle(step, runner, other, monitor))
                    if runner.error is not None:
                        raise runner.error
    except BaseException:
        _end(transactions, "rollback")
        raise
    _end(transactions, "commit")
    for transaction in transactions:
        if transaction.is_alive():
            raise TimeoutError("a transaction did not end")
        if transaction.error is not None:
            raise transaction.error
    return Interleaving(first_waited=tuple(waited[0]), second_waited=tuple(waited[1]))
