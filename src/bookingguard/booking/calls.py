"""Retell call lifecycle events (call_started, call_ended, call_analyzed) upserted into ``calls``.

A redelivered event changes nothing: each (event, call id) is recorded once in
``webhook_events``, in the same transaction as its effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bookingguard.db.models import SESSION_OUTCOMES, Call, WebhookEvent

__all__ = ["DEFAULT_OUTCOME_MAPPING", "CallEvent", "map_session_outcome", "record_call_event"]

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
    """Upsert the call from ``event``; False if this event was already recorded. Flushes only.

    Two deliveries racing past the duplicate check meet the unique ``event_key``:
    the loser's flush raises ``IntegrityError`` and its transaction must roll back.
    """
    key = f"retell:{event.event}:{event.retell_call_id}"
    if session.scalar(select(WebhookEvent.id).where(WebhookEvent.event_key == key)) is not None:
        return False
    session.add(WebhookEvent(source="retell", event_key=key, received_at=now))
    call = session.scalars(
        select(Call).where(Call.retell_call_id == event.retell_call_id).with_for_update()
    ).first()
    if call is None:
        call = Call(retell_call_id=event.retell_call_id, created_at=now)
        session.add(call)
    for name in ("direction", "from_number", "to_number", "call_status", "started_at", "ended_at"):
        value = getattr(event, name)
        if value is not None:
            setattr(call, name, value)
    if event.event == "call_analyzed":
        outcome = map_session_outcome(event, outcome_mapping)
        # The flags and the outcome must agree (the database corrects them, "booked"
        # winning): a call that holds a booking keeps its outcome, and an analysis
        # claiming a booking never creates one.
        if outcome is not None and outcome not in _BOOKING_OUTCOMES and not call.appointment_made:
            call.session_outcome = outcome
    call.updated_at = now
    session.flush()
    return True
