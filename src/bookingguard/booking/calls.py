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
from typing import Any

import anyio.to_thread
from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.models import SESSION_OUTCOMES, Call, WebhookEvent
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
#: SQLite: store event keys, skipping those already stored, returning the stored ones.
_CLAIM_EVENTS = (
    sqlite.insert(WebhookEvent)
    .on_conflict_do_nothing(index_elements=[WebhookEvent.event_key])
    .returning(WebhookEvent.event_key)
)
#: Outcomes only the booking path decides: an LLM's analysis never makes or unmakes a booking.
_BOOKING_OUTCOMES = frozenset({"appointment_booked", "creation_failed"})
#: The call columns an event may set; a value it leaves out (None) keeps the stored one.
_EVENT_COLUMNS = ("direction", "from_number", "to_number", "call_status", "started_at", "ended_at")
#: PostgreSQL: ``record_call_events`` as one statement, one row per event in the arrays
#: (``session_outcome`` already without the booking outcomes). It claims the event keys,
#: keeps each claimed key's first event, merges a call's fresh events (the last value
#: given wins), locks the existing calls in ``retell_call_id`` order and updates them, a
#: call holding a booking keeping its outcome, inserts the others, and returns the keys
#: it claimed.
_RECORD_EVENTS_PG = text("""
WITH batch AS (
    SELECT * FROM unnest(
        CAST(:ord AS integer[]), CAST(:event_key AS text[]), CAST(:retell_call_id AS text[]),
        CAST(:direction AS text[]), CAST(:from_number AS text[]), CAST(:to_number AS text[]),
        CAST(:call_status AS text[]), CAST(:started_at AS timestamptz[]),
        CAST(:ended_at AS timestamptz[]), CAST(:session_outcome AS text[])
    ) AS b (ord, event_key, retell_call_id, direction, from_number, to_number, call_status,
            started_at, ended_at, session_outcome)
),
claimed AS (
    INSERT INTO webhook_events (source, event_key, received_at)
    SELECT DISTINCT 'retell', event_key, CAST(:now AS timestamptz) FROM batch ORDER BY event_key
    ON CONFLICT (event_key) DO NOTHING
    RETURNING event_key
),
fresh AS (
    SELECT DISTINCT ON (event_key) * FROM batch
    WHERE event_key IN (SELECT event_key FROM claimed)
    ORDER BY event_key, ord
),
merged AS (
    SELECT retell_call_id,
        (array_agg(direction ORDER BY ord DESC) FILTER (WHERE direction IS NOT NULL))[1]
            AS direction,
        (array_agg(from_number ORDER BY ord DESC) FILTER (WHERE from_number IS NOT NULL))[1]
            AS from_number,
        (array_agg(to_number ORDER BY ord DESC) FILTER (WHERE to_number IS NOT NULL))[1]
            AS to_number,
        (array_agg(call_status ORDER BY ord DESC) FILTER (WHERE call_status IS NOT NULL))[1]
            AS call_status,
        (array_agg(started_at ORDER BY ord DESC) FILTER (WHERE started_at IS NOT NULL))[1]
            AS started_at,
        (array_agg(ended_at ORDER BY ord DESC) FILTER (WHERE ended_at IS NOT NULL))[1]
            AS ended_at,
        (array_agg(session_outcome ORDER BY ord DESC)
            FILTER (WHERE session_outcome IS NOT NULL))[1] AS session_outcome
    FROM fresh GROUP BY retell_call_id
),
locked AS (
    SELECT id, retell_call_id FROM calls
    WHERE retell_call_id IN (SELECT retell_call_id FROM merged)
    ORDER BY retell_call_id FOR UPDATE
),
updated AS (
    UPDATE calls c
    SET direction = coalesce(m.direction, c.direction),
        from_number = coalesce(m.from_number, c.from_number),
        to_number = coalesce(m.to_number, c.to_number),
        call_status = coalesce(m.call_status, c.call_status),
        started_at = coalesce(m.started_at, c.started_at),
        ended_at = coalesce(m.ended_at, c.ended_at),
        session_outcome = CASE WHEN c.appointment_made THEN c.session_outcome
                               ELSE coalesce(m.session_outcome, c.session_outcome) END,
        updated_at = CAST(:now AS timestamptz)
    FROM merged m JOIN locked l USING (retell_call_id)
    WHERE c.id = l.id
),
created AS (
    INSERT INTO calls (retell_call_id, direction, from_number, to_number, call_status,
                       started_at, ended_at, session_outcome, created_at, updated_at)
    SELECT retell_call_id, direction, from_number, to_number, call_status,
           started_at, ended_at, session_outcome,
           CAST(:now AS timestamptz), CAST(:now AS timestamptz)
    FROM merged WHERE retell_call_id NOT IN (SELECT retell_call_id FROM locked)
    ORDER BY retell_call_id
)
SELECT event_key FROM claimed
""")


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
    order, so concurrent batches never wait on each other in a cycle. On PostgreSQL
    all of it is one statement (``_RECORD_EVENTS_PG``); on SQLite, a few: the
    claim, the look-up, an ORM bulk INSERT and an UPDATE by primary key. Objects
    already loaded in ``session`` are not refreshed.
    """
    keys = [_event_key(event) for event in events]
    if session.get_bind().dialect.name == "postgresql":
        fresh = _record_in_one_statement(session, keys, events, now, outcome_mapping)
        return [_first_claim(fresh, key) for key in keys]
    fresh = _claim_events(session, keys, now=now)
    call_ids = sorted({event.retell_call_id for event in events})
    existing = {
        row.retell_call_id: (row.id, row.appointment_made)
        for row in session.execute(
            select(Call.id, Call.retell_call_id, Call.appointment_made)
            .where(Call.retell_call_id.in_(call_ids))
            .order_by(Call.retell_call_id)
            .with_for_update()
        )
    }
    changes: dict[str, dict[str, Any]] = {}
    recorded: list[bool] = []
    for key, event in zip(keys, events, strict=True):
        if not _first_claim(fresh, key):
            recorded.append(False)
            continue
        booked = existing.get(event.retell_call_id, (0, False))[1]
        changes.setdefault(event.retell_call_id, {}).update(
            _changes(event, booked=booked, now=now, outcome_mapping=outcome_mapping)
        )
        recorded.append(True)
    created = [
        {"retell_call_id": call_id, "created_at": now, **values}
        for call_id, values in changes.items()
        if call_id not in existing
    ]
    if created:
        session.execute(insert(Call), created)
    updated = [
        {"id": existing[call_id][0], **values}
        for call_id, values in changes.items()
        if call_id in existing
    ]
    if updated:
        session.execute(update(Call), updated)
    return recorded


def _record_in_one_statement(
    session: Session,
    keys: Sequence[str],
    events: Sequence[CallEvent],
    now: datetime,
    outcome_mapping: Mapping[str, str] | None,
) -> set[str]:
    """PostgreSQL: ``_RECORD_EVENTS_PG`` for ``events``; returns the keys it claimed."""
    params: dict[str, Any] = {
        "now": now,
        "ord": list(range(len(events))),
        "event_key": list(keys),
        "retell_call_id": [event.retell_call_id for event in events],
        "session_outcome": [_analysed_outcome(event, outcome_mapping) for event in events],
    }
    for name in _EVENT_COLUMNS:
        params[name] = [getattr(event, name) for event in events]
    return set(session.scalars(_RECORD_EVENTS_PG, params))


def _first_claim(claimed: set[str], key: str) -> bool:
    """Whether ``key`` was claimed and not yet counted (a repeat in one batch is not new)."""
    if key not in claimed:
        return False
    claimed.discard(key)
    return True


def _claim_events(session: Session, keys: Sequence[str], *, now: datetime) -> set[str]:
    """Record the event keys not recorded yet, in one statement; returns those keys.

    ``INSERT … ON CONFLICT DO NOTHING RETURNING``: an event another transaction is
    recording waits for it, then counts as recorded if it committed.
    """
    rows = [
        {"source": "retell", "event_key": key, "received_at": now} for key in dict.fromkeys(keys)
    ]
    return set(session.scalars(_CLAIM_EVENTS, rows))


def _changes(
    event: CallEvent, *, booked: bool, now: datetime, outcome_mapping: Mapping[str, str] | None
) -> dict[str, Any]:
    """The columns ``event`` sets on its call."""
    values: dict[str, Any] = {
        name: getattr(event, name) for name in _EVENT_COLUMNS if getattr(event, name) is not None
    }
    outcome = _analysed_outcome(event, outcome_mapping)
    # The flags and the outcome must agree (the database corrects them, "booked"
    # winning): a call that holds a booking keeps its outcome.
    if outcome is not None and not booked:
        values["session_outcome"] = outcome
    values["updated_at"] = now
    return values


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
