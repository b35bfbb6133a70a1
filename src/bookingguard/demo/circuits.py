"""The demo's circuit breakers, given their history through the breaker's own SQL store.

Each circuit is driven by the calls that would have led it to its state: failures
that open it, probes after the cooldown that close it. The store runs the state
machine on a clock set to each moment, so the rows and the transition history are
exactly what the service itself would have written.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import Engine

from bookingguard.resilience import BreakerPolicy, Outcome, SqlStore

__all__ = ["write_circuits"]

#: The thresholds the demo's history follows (written out, so it does not move with settings).
POLICY = BreakerPolicy(failure_threshold=3, cooldown_seconds=30, success_threshold=2)
RECOVERED = "appointment_booking:event_type:1001"
OPEN_NOW = "appointment_booking:event_type:1002"


class _History:
    """Replays calls on one store at chosen moments."""

    def __init__(self, engine: Engine) -> None:
        self.moment = 0.0
        self.store = SqlStore(engine, clock=lambda: self.moment)

    async def failures(self, key: str, *, last_at: datetime) -> None:
        """Enough failures to open the circuit, a second apart, the last at ``last_at``."""
        for before in range(POLICY.failure_threshold - 1, -1, -1):
            self.moment = (last_at - timedelta(seconds=before)).timestamp()
            admission = await self.store.acquire(key, POLICY)
            await self.store.record(key, POLICY, admission, Outcome.FAILURE, slow=False)

    async def probe(self, key: str, *, at: datetime) -> None:
        """One successful call at ``at`` (a probe once the circuit is half-open)."""
        self.moment = at.timestamp()
        admission = await self.store.acquire(key, POLICY)
        await self.store.record(key, POLICY, admission, Outcome.SUCCESS, slow=False)


async def _replay(engine: Engine, *, now: datetime, outage: datetime) -> int:
    history = _History(engine)
    await history.failures(RECOVERED, last_at=outage)
    await history.probe(RECOVERED, at=outage + timedelta(seconds=POLICY.cooldown_seconds))
    await history.probe(RECOVERED, at=outage + timedelta(seconds=95))
    await history.failures(OPEN_NOW, last_at=now - timedelta(minutes=4))
    circuits = await history.store.list_circuits()
    await history.store.aclose()
    return len(circuits)


def write_circuits(engine: Engine, *, now: datetime, outage: datetime) -> int:
    """Two booking circuits: one recovered from an outage at ``outage``, one open right now.

    Returns how many circuits the store holds afterwards. The store is async; its
    event loop runs in a thread of its own, so callers that already run a loop in
    this thread (Playwright's sync API does) can load the demo too.
    """
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, _replay(engine, now=now, outage=outage)).result()
