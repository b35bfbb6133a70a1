"""The batch write of Retell call events into ``calls``, one implementation per database.

``write_call_events(session, rows, now=…)`` claims each row's event key in
``webhook_events`` (a key already stored is skipped), then applies the claimed
rows to their calls (a call holding a booking keeps its outcome) and returns the
keys it claimed. Calls are locked in ``retell_call_id`` order, so concurrent
batches never wait on each other in a cycle. Never commits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Table, insert, select, text, update
from sqlalchemy.orm import Session

from bookingguard.db.dialects import PostgresDialect, SqliteDialect, dialect_of
from bookingguard.db.models import Call, WebhookEvent

__all__ = ["CALL_EVENT_COLUMNS", "CallEventRow", "CallEventWrite", "write_call_events"]

#: The call columns an event may set; a value it leaves out (None) keeps the stored one.
CALL_EVENT_COLUMNS = (
    "direction",
    "from_number",
    "to_number",
    "call_status",
    "started_at",
    "ended_at",
)


@dataclass(frozen=True, kw_only=True)
class CallEventRow:
    """One event's key and the values it sets on its call (None: keep the stored one).

    ``session_outcome`` is never a booking outcome: only bookings make those.
    """

    event_key: str
    retell_call_id: str
    direction: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    call_status: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    session_outcome: str | None = None


_WEBHOOK_EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]


class CallEventWrite(ABC):
    """How one database writes a batch of call events."""

    name: ClassVar[str]

    @abstractmethod
    def write(self, session: Session, rows: Sequence[CallEventRow], *, now: datetime) -> set[str]:
        """Claim the rows' event keys and apply the claimed rows; returns the claimed keys."""


#: ``PostgresCallEventWrite`` as one statement, one row per event in the arrays. It claims
#: the event keys, keeps each claimed key's first event, merges a call's fresh events (the
#: last value given wins), locks the existing calls in ``retell_call_id`` order and updates
#: them, a call holding a booking keeping its outcome, inserts the others, and returns the
#: keys it claimed.
_RECORD_EVENTS = text("""
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


class PostgresCallEventWrite(CallEventWrite):
    """The whole batch in one statement, the events as arrays (one round trip)."""

    name: ClassVar[str] = PostgresDialect.name

    def write(self, session: Session, rows: Sequence[CallEventRow], *, now: datetime) -> set[str]:
        params: dict[str, Any] = {
            "now": now,
            "ord": list(range(len(rows))),
            "event_key": [row.event_key for row in rows],
            "retell_call_id": [row.retell_call_id for row in rows],
            "session_outcome": [row.session_outcome for row in rows],
        }
        for name in CALL_EVENT_COLUMNS:
            params[name] = [getattr(row, name) for row in rows]
        return set(session.scalars(_RECORD_EVENTS, params))


class SqliteCallEventWrite(CallEventWrite):
    """A few statements: the claim, the look-up, an ORM bulk INSERT and an UPDATE by key."""

    name: ClassVar[str] = SqliteDialect.name

    def __init__(self) -> None:
        # ``INSERT … ON CONFLICT DO NOTHING RETURNING``: an event another transaction is
        # recording waits for it, then counts as recorded if it committed.
        self._claim = (
            SqliteDialect()
            .insert_or_ignore(_WEBHOOK_EVENTS, conflict_columns=["event_key"])
            .returning(WebhookEvent.event_key)
        )

    def write(self, session: Session, rows: Sequence[CallEventRow], *, now: datetime) -> set[str]:
        keys = dict.fromkeys(row.event_key for row in rows)
        claimed = set(
            session.scalars(
                self._claim,
                [{"source": "retell", "event_key": key, "received_at": now} for key in keys],
            )
        )
        call_ids = sorted({row.retell_call_id for row in rows})
        existing = {
            found.retell_call_id: (found.id, found.appointment_made)
            for found in session.execute(
                select(Call.id, Call.retell_call_id, Call.appointment_made)
                .where(Call.retell_call_id.in_(call_ids))
                .order_by(Call.retell_call_id)
                .with_for_update()
            )
        }
        changes: dict[str, dict[str, Any]] = {}
        unapplied = set(claimed)
        for row in rows:
            if row.event_key not in unapplied:
                continue
            unapplied.discard(row.event_key)
            booked = existing.get(row.retell_call_id, (0, False))[1]
            changes.setdefault(row.retell_call_id, {}).update(_changes(row, booked=booked, now=now))
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
        return claimed


def _changes(row: CallEventRow, *, booked: bool, now: datetime) -> dict[str, Any]:
    """The columns ``row`` sets on its call."""
    values: dict[str, Any] = {
        name: getattr(row, name) for name in CALL_EVENT_COLUMNS if getattr(row, name) is not None
    }
    # The flags and the outcome must agree (the database corrects them, "booked"
    # winning): a call that holds a booking keeps its outcome.
    if row.session_outcome is not None and not booked:
        values["session_outcome"] = row.session_outcome
    values["updated_at"] = now
    return values


_BY_DIALECT: dict[str, CallEventWrite] = {
    PostgresCallEventWrite.name: PostgresCallEventWrite(),
    SqliteCallEventWrite.name: SqliteCallEventWrite(),
}


def write_call_events(session: Session, rows: Sequence[CallEventRow], *, now: datetime) -> set[str]:
    """Claim the rows' event keys and apply the claimed rows, in the session's database."""
    return _BY_DIALECT[dialect_of(session).name].write(session, rows, now=now)
