"""Replaying the spool: failure records (and breaker transitions) written into the database
once it answers again.

Each record is written by the store's ``record_failure``, which writes a record once
whatever happens around it (its id is kept beside what it wrote), and only then
removed from the spool. A replay that dies between the database's commit and the
removal leaves the record spooled; the next replay finds it written and just removes
it. Two processes replaying one file at once write each record once for the same
reason. The first record the database refuses ends the pass (it is most likely still
down); that record is counted and moves behind the others, so one record the database
will never take does not hold up the rest. The breaker's spooled transitions go first,
through the breaker's ``TransitionAudit``.

``serve`` runs ``run_forever`` beside its other background work; ``bookingguard check``
runs one ``replay`` before it checks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread

from bookingguard.booking.metrics import BookingMetrics
from bookingguard.booking.ports import FailureSpool
from bookingguard.booking.store import BookingStore
from bookingguard.resilience.audit import TransitionAudit

__all__ = ["ReplayResult", "SpoolReplayer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayResult:
    """One pass: records written into the database, records left, why the pass stopped."""

    replayed: int
    remaining: int
    error: str | None = None


class SpoolReplayer:
    """Moves failure records from the spool into the database."""

    def __init__(
        self,
        *,
        spool: FailureSpool,
        store: BookingStore,
        metrics: BookingMetrics | None = None,
        transitions: TransitionAudit | None = None,
        batch_size: int = 100,
    ) -> None:
        self._spool = spool
        self._store = store
        self._metrics = metrics
        self._transitions = transitions
        self._batch_size = batch_size

    async def replay(self) -> ReplayResult:
        """Write every spooled transition and record into the database, until one is refused."""
        replayed = 0
        refused: str | None = None
        if self._transitions is not None:
            try:
                replayed += await self._transitions.replay(batch_size=self._batch_size)
            except Exception as exc:
                refused = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log.warning("replay of spooled circuit transitions failed: %s", refused)
        error: str | None = None
        while error is None:
            batch = await anyio.to_thread.run_sync(self._spool.pending, self._batch_size)
            for record in batch:
                try:
                    await self._store.record_failure(record)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    log.warning("replay of spooled record %s failed: %s", record.record_id, error)
                    await anyio.to_thread.run_sync(
                        self._spool.note_failure, record.record_id, error
                    )
                    break
                await anyio.to_thread.run_sync(self._spool.remove, record.record_id)
                replayed += 1
            if len(batch) < self._batch_size:
                break
        remaining = await self.observe_backlog()
        if replayed:
            log.info("replayed %d spooled record(s); %d left", replayed, remaining)
        return ReplayResult(replayed, remaining, error or refused)

    async def observe_backlog(self) -> int:
        """The spool's backlog, also set on the backlog gauge."""
        backlog = await anyio.to_thread.run_sync(self._spool.backlog)
        if self._metrics is not None:
            self._metrics.spool_backlog.set(backlog)
        return backlog

    async def run_forever(
        self,
        interval_seconds: float,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        passed: Callable[[ReplayResult], None] | None = None,
    ) -> None:
        """Replay at once, then every ``interval_seconds``, until cancelled.

        ``passed`` is told each pass's result (tests wait on it instead of the clock).
        """
        while True:
            try:
                result = await self.replay()
            except Exception:
                log.exception("spool replay failed")
            else:
                if passed is not None:
                    passed(result)
            await sleep(interval_seconds)
