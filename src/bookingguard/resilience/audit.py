"""Writes transitions decided by Redis or memory to the database, off the caller's path."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine

from bookingguard.resilience.machine import Transition
from bookingguard.resilience.stores.sql import write_transitions

__all__ = ["TransitionAudit"]

log = logging.getLogger(__name__)


class TransitionAudit:
    """Persists transitions to ``circuit_breaker_states`` and the history in the background.

    Only transitions reach it (a successful call in closed state has none), each
    write runs in a worker thread, one after another in order, and a failed write is logged,
    never raised into a guarded call. ``drain()`` waits for pending writes.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
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
                await asyncio.to_thread(write_transitions, self.engine, transitions)
        except Exception:
            log.exception("could not audit %d circuit transition(s)", len(transitions))

    async def drain(self) -> None:
        """Wait until every submitted transition is written (or has failed and been logged)."""
        while self._pending:
            await asyncio.gather(*list(self._pending))
