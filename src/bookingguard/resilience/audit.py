"""Writes transitions decided by Redis or memory to the database, off the caller's path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from bookingguard.resilience.machine import Transition
from bookingguard.resilience.retry import RetryPolicy, retry_async
from bookingguard.resilience.stores.sql import write_transitions

__all__ = ["AUDIT_RETRY", "TransitionAudit"]

log = logging.getLogger(__name__)

#: A database that restarts or drops its connections is waited for this long (0.25 s,
#: 0.5 s … about a minute in all) before a transition's audit is given up and logged:
#: the history is what the operators read, so a blip must not leave a gap in it.
AUDIT_RETRY = RetryPolicy(attempts=9, base_delay=0.25, budget_seconds=60.0)


def _database_unavailable(exc: BaseException) -> bool:
    """A lost or refused connection, as opposed to a write the database rejects."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class TransitionAudit:
    """Persists transitions to ``circuit_breaker_states`` and the history in the background.

    Only transitions reach it (a successful call in closed state has none), each
    write runs in a worker thread, one after another in order; a write the database
    could not take because it was unreachable is retried (``AUDIT_RETRY``), and one
    that still fails is logged, never raised into a guarded call. ``drain()`` waits for
    pending writes.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        policy: RetryPolicy = AUDIT_RETRY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.engine = engine
        self._policy = policy
        self._sleep = sleep
        self._pending: set[asyncio.Task[None]] = set()
        self._order: asyncio.Lock | None = None

    def submit(self, transitions: list[Transition]) -> None:
        task = asyncio.get_running_loop().create_task(self._write(list(transitions)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, transitions: list[Transition]) -> None:
        # One write at a time, in submission order (asyncio.Lock is first come, first served).
        self._order = self._order or asyncio.Lock()
        try:
            async with self._order:

                async def write() -> None:
                    await asyncio.to_thread(write_transitions, self.engine, transitions)

                await retry_async(
                    write,
                    policy=self._policy,
                    is_retryable=_database_unavailable,
                    sleep=self._sleep,
                )
        except Exception:
            log.exception("could not audit %d circuit transition(s)", len(transitions))

    async def drain(self) -> None:
        """Wait until every submitted transition is written (or has failed and been logged)."""
        while self._pending:
            await asyncio.gather(*list(self._pending))
