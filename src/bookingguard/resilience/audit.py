"""Writes transitions decided by Redis or memory to the database, off the caller's path.

A transition that the database cannot take at once goes to this host's spool
(``bookingguard.db.spool``, fsynced) before it is retried: a process killed while the
database is down (its retries still waiting) loses none of it, and ``replay`` (run by
``serve`` beside the spool's failure records, and by ``bookingguard check``) writes it
into the history later. Redis keeps what its script decided in each circuit's outbox
as well; ``replay`` drains those too, so a reply that never came back (a timeout) does
not leave a transition out of the history. The writes need no order: the state row
takes a transition only when it is newer than what the row holds, and the history
keeps one row per (circuit, version), so writes racing each other or a replay land
the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from bookingguard.db.spool import SpooledTransition
from bookingguard.resilience.errors import StoreUnavailableError
from bookingguard.resilience.machine import CircuitStatistics, Transition
from bookingguard.resilience.retry import RetryPolicy, retry_async
from bookingguard.resilience.stores.sql import write_transitions

__all__ = [
    "AUDIT_RETRY",
    "TransitionAudit",
    "TransitionOutbox",
    "TransitionSpool",
    "decode",
    "encode",
]

log = logging.getLogger(__name__)

#: A database that restarts or drops its connections is waited for this long (0.25 s,
#: 0.5 s … about a minute in all) before a transition's audit is left to the spool's
#: replay: the history is what the operators read, so a blip must not leave a gap in it.
AUDIT_RETRY = RetryPolicy(attempts=9, base_delay=0.25, budget_seconds=60.0)

_TIMES = ("last_failure_at", "opened_at", "closed_at", "open_until")


class TransitionSpool(Protocol):
    """Where transitions wait while the database is down (``bookingguard.db.spool.Spool``)."""

    def append_transitions(self, transitions: Sequence[SpooledTransition]) -> None: ...

    def pending_transitions(self, limit: int = 100) -> list[SpooledTransition]: ...

    def remove_transitions(self, transitions: Sequence[SpooledTransition]) -> None: ...


class TransitionOutbox(Protocol):
    """A store that keeps the transitions it decided until they are audited (``RedisStore``)."""

    name: str

    async def drain_outbox(self, write: Callable[[list[Transition]], Awaitable[None]]) -> int: ...


def _database_unavailable(exc: BaseException) -> bool:
    """A lost or refused connection, as opposed to a write the database rejects."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def encode(transition: Transition) -> SpooledTransition:
    """``transition`` as the spool keeps it."""
    payload = {
        "from_state": transition.from_state,
        "to_state": transition.to_state,
        "reason": transition.reason,
        "at": transition.at.isoformat(),
        "after": transition.after.as_dict(),
        "decided_by": transition.decided_by,
    }
    return SpooledTransition(transition.circuit_key, transition.version, json.dumps(payload))


def decode(spooled: SpooledTransition) -> Transition:
    """The transition the spool kept."""
    payload: dict[str, Any] = json.loads(spooled.payload)
    after: dict[str, Any] = payload["after"]
    for name in _TIMES:
        after[name] = None if after[name] is None else datetime.fromisoformat(after[name])
    return Transition(
        circuit_key=spooled.circuit_key,
        from_state=payload["from_state"],
        to_state=payload["to_state"],
        reason=payload["reason"],
        at=datetime.fromisoformat(payload["at"]),
        version=spooled.version,
        after=CircuitStatistics(**after),
        decided_by=payload["decided_by"],
    )


class TransitionAudit:
    """Persists transitions to ``circuit_breaker_states`` and the history in the background.

    Only transitions reach it (a successful call in closed state has none). Each
    submitted batch is written in a worker thread; one the database could not take
    because it was unreachable goes to the spool (when there is one) and is retried
    (``AUDIT_RETRY``), then taken out of the spool once written. One that still fails
    waits in the spool for ``replay``; without a spool it is logged, never raised into
    a guarded call. ``drain()`` waits for pending writes.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        spool: TransitionSpool | None = None,
        outboxes: Sequence[TransitionOutbox] = (),
        policy: RetryPolicy = AUDIT_RETRY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.engine = engine
        self._spool = spool
        self._outboxes = list(outboxes)
        self._policy = policy
        self._sleep = sleep
        self._pending: set[asyncio.Task[None]] = set()

    def submit(self, transitions: list[Transition]) -> None:
        task = asyncio.get_running_loop().create_task(self._write(list(transitions)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write_now(self, transitions: list[Transition]) -> None:
        await asyncio.to_thread(write_transitions, self.engine, transitions)

    async def _write(self, transitions: list[Transition]) -> None:
        async def write() -> None:
            await self._write_now(transitions)

        try:
            await write()
            return
        except Exception as exc:
            if not _database_unavailable(exc):
                log.exception("could not audit %d circuit transition(s)", len(transitions))
                return
        spooled = await self._keep(transitions)
        try:
            await retry_async(
                write, policy=self._policy, is_retryable=_database_unavailable, sleep=self._sleep
            )
        except Exception:
            log.exception(
                "could not audit %d circuit transition(s)%s",
                len(transitions),
                "; they wait in the spool" if spooled else "",
            )
            return
        if spooled:
            await self._forget(spooled)

    async def _keep(self, transitions: list[Transition]) -> list[SpooledTransition]:
        """``transitions`` in the spool, durably (none kept when there is no spool or it fails)."""
        if self._spool is None:
            return []
        spooled = [encode(transition) for transition in transitions]
        try:
            await asyncio.to_thread(self._spool.append_transitions, spooled)
        except Exception:
            log.exception("could not spool %d circuit transition(s)", len(spooled))
            return []
        return spooled

    async def _forget(self, spooled: list[SpooledTransition]) -> None:
        assert self._spool is not None
        try:
            await asyncio.to_thread(self._spool.remove_transitions, spooled)
        except Exception:
            # They stay spooled; a replay finds them written and removes them.
            log.warning("could not take %d written transition(s) out of the spool", len(spooled))

    async def replay(self, *, batch_size: int = 100) -> int:
        """Write the spooled transitions into the history; how many were written.

        A replay that dies between the database's commit and the spool's delete leaves
        them spooled, and the next one writes nothing twice. An unreachable database
        ends the pass (raised); they wait for the next. The stores' outboxes are
        drained first; their entries, mostly written already by the process that got
        the reply, are not counted.
        """
        for outbox in self._outboxes:
            try:
                await outbox.drain_outbox(self._write_now)
            except StoreUnavailableError as exc:
                log.warning("could not drain the %s outbox: %s", outbox.name, exc.message)
        if self._spool is None:
            return 0
        written = 0
        while True:
            batch = await asyncio.to_thread(self._spool.pending_transitions, batch_size)
            if not batch:
                return written
            await self._write_now([decode(t) for t in batch])
            await asyncio.to_thread(self._spool.remove_transitions, batch)
            written += len(batch)
            if len(batch) < batch_size:
                return written

    async def drain(self) -> None:
        """Wait until every submitted transition is written (or has failed and been logged)."""
        while self._pending:
            await asyncio.gather(*list(self._pending))
