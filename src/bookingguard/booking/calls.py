"""Retell call lifecycle events (call_started, call_ended, call_analyzed) upserted into ``calls``.

A redelivered event changes nothing: each (event, call id) is recorded once in
``webhook_events``, in the same transaction as its effect. ``CallEventRecorder``
is how the webhook stores them: events arriving together share one transaction
(group commit), and each webhook is answered only after its event is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio.to_thread
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.call_events import CallEventRow, write_call_events
from bookingguard.db.models import SESSION_OUTCOMES
from bookingguard.db.uow import UnitOfWork

__all__ = [
    "DEFAULT_OUTCOME_MAPPING",
    "CallEvent",
    "CallEventRecorder",
    "map_session_outcome",
    "record_call_event",
    "record_call_events",
]

#: Retell values mapped to our session outcomes; ``retell.outcome_mapping`` adds to it.
DEFAULT_OUTCOME_MAPPING: dict[str, str] = {
    "voicemail_reached": "voicemail",
    "dial_no_answer": "abandoned",
    "dial_busy": "abandoned",
    "dial_failed": "technical_issue",
    "error_llm_websocket_open": "technical_issue",
    "call_transfer": "transferred",
}
#: Outcomes only the booking path decides: an LLM's analysis never makes or unmakes a booking.
_BOOKING_OUTCOMES = frozenset({"appointment_booked", "creation_failed"})


@dataclass(frozen=True, kw_only=True)
class CallEvent:
    """What a Retell call webhook says about one call."""

    event: str
    retell_call_id: str
    direction: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    call_status: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    analysis_outcome: str | None = None
    disconnection_reason: str | None = None


def map_session_outcome(event: CallEvent, mapping: Mapping[str, str] | None = None) -> str | None:
    """Our session outcome for the analysed call, or None when nothing maps."""
    table = {**DEFAULT_OUTCOME_MAPPING, **(mapping or {})}
    for raw in (event.analysis_outcome, event.disconnection_reason):
        if raw is None:
            continue
        value = table.get(raw, raw)
        if value in SESSION_OUTCOMES:
            return value
    return "other" if event.analysis_outcome is not None else None


def record_call_event(
    session: Session,
    event: CallEvent,
    *,
    now: datetime,
    outcome_mapping: Mapping[str, str] | None = None,
) -> bool:
    """Upsert the call from ``event``; False if this event was already recorded. Never commits.

    A delivery racing another transaction that records the same event waits for it
    and returns False. Two deliveries creating the same call meet its unique
    ``retell_call_id``: the loser's insert raises ``IntegrityError`` and its
    transaction must roll back.
    """
    return record_call_events(session, [event], now=now, outcome_mapping=outcome_mapping)[0]


def _event_key(event: CallEvent) -> str:
    return f"retell:{event.event}:{event.retell_call_id}"


def record_call_events(
    session: Session,
    events: Sequence[CallEvent],
    *,
    now: datetime,
    outcome_mapping: Mapping[str, str] | None = None,
) -> list[bool]:
    """``record_call_event`` for several events in their order; never commits.

    Returns, per event, whether it was new (a repeat within ``events`` is not). The
    event keys are claimed first; the calls are then locked in ``retell_call_id``
    order, so concurrent batches never wait on each other in a cycle. The database's
    batch write (``write_call_events``) does it in as few statements as it can.
    Objects already loaded in ``session`` are not refreshed.
    """
    rows = [
        CallEventRow(
            event_key=_event_key(event),
            retell_call_id=event.retell_call_id,
            direction=event.direction,
            from_number=event.from_number,
            to_number=event.to_number,
            call_status=event.call_status,
            started_at=event.started_at,
            ended_at=event.ended_at,
            session_outcome=_analysed_outcome(event, outcome_mapping),
        )
        for event in events
    ]
    claimed = write_call_events(session, rows, now=now)
    return [_first_claim(claimed, row.event_key) for row in rows]


def _first_claim(claimed: set[str], key: str) -> bool:
    """Whether ``key`` was claimed and not yet counted (a repeat in one batch is not new)."""
    if key not in claimed:
        return False
    claimed.discard(key)
    return True


def _analysed_outcome(event: CallEvent, outcome_mapping: Mapping[str, str] | None) -> str | None:
    """The session outcome an analysis sets; never a booking one (only bookings make those)."""
    if event.event != "call_analyzed":
        return None
    outcome = map_session_outcome(event, outcome_mapping)
    return None if outcome in _BOOKING_OUTCOMES else outcome


class CallEventRecorder:
    """Stores call events with group commit: one transaction for the events that queue up.

    ``record`` returns once the event is committed (True if it was new). While one
    batch is written, the events that arrive wait and go together into the next, so
    a quiet system writes each event at once and a busy one shares commits. When a
    batch fails (another replica recorded the same event or call meanwhile, a
    deadlock), each of its events is written alone, retried once on a unique
    conflict, so one event's failure reaches only its own caller.
    """

    #: The most events one transaction takes.
    MAX_BATCH = 200

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        clock: Callable[[], datetime],
        outcome_mapping: Mapping[str, str] | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._outcome_mapping = outcome_mapping
        self._pending: list[tuple[CallEvent, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, event: CallEvent) -> bool:
        """Store ``event``; returns when it is committed. Runs on one event loop."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        if self._writer is None or self._writer.done():
            # A task of its own: a caller that goes away does not stop the others' writes.
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self.MAX_BATCH]
            del self._pending[: self.MAX_BATCH]
            outcomes: list[bool | Exception]
            try:
                outcomes = await anyio.to_thread.run_sync(
                    self._write, [event for event, _ in batch]
                )
            except Exception as exc:  # every caller hears of it; none waits forever
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _write(self, events: list[CallEvent]) -> list[bool | Exception]:
        try:
            return list(self._commit(events))
        except SQLAlchemyError:
            return [self._write_alone(event) for event in events]

    def _write_alone(self, event: CallEvent) -> bool | Exception:
        try:
            try:
                return self._commit([event])[0]
            except IntegrityError:
                # A racing delivery created the call first; the retry updates it.
                return self._commit([event])[0]
        except SQLAlchemyError as exc:
            return exc

    def _commit(self, events: list[CallEvent]) -> list[bool]:
        with UnitOfWork(self._sessions) as uow:
            recorded = record_call_events(
                uow.session, events, now=self._clock(), outcome_mapping=self._outcome_mapping
            )
            uow.commit()
        return recorded
