"""Cal.com booking webhooks applied to local appointments.

The database guarantees carry each change to the call: a new live appointment
links it, a cancelled last appointment unlinks it and moves its outcome off
``appointment_booked``. A booking we do not know is linked through the Retell
call id in its metadata, or raises an ``unknown_calcom_booking`` alert.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bookingguard.booking.types import IDEMPOTENCY_METADATA_KEY, RETELL_CALL_METADATA_KEY
from bookingguard.calcom import CalcomWebhook, CalcomWebhookPayload
from bookingguard.db.alerts import record_alert
from bookingguard.db.models import Appointment, Call, WebhookEvent

__all__ = ["CalcomEventResult", "apply_calcom_event"]


class CalcomEventResult(enum.StrEnum):
    """What a delivery did."""

    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    UPDATED = "updated"
    LINKED = "linked"
    UNKNOWN = "unknown"


def apply_calcom_event(
    session: Session, webhook: CalcomWebhook, *, now: datetime
) -> CalcomEventResult:
    """Apply one delivery (once: redeliveries are recognised). Flushes only.

    A delivery racing another writer (a duplicate delivery, the booking path storing
    the same booking) meets a unique constraint: the flush raises ``IntegrityError``
    and the caller rolls back and tries again, when the duplicate is recognised.
    """
    payload = webhook.payload
    trigger = webhook.trigger_event
    key = f"calcom:{trigger}:{payload.uid}"
    if session.scalar(select(WebhookEvent.id).where(WebhookEvent.event_key == key)) is not None:
        return CalcomEventResult.DUPLICATE
    session.add(WebhookEvent(source="calcom", event_key=key, received_at=now))
    if trigger == "BOOKING_CREATED":
        return _created(session, payload, now=now)
    if trigger == "BOOKING_CANCELLED":
        return _cancelled(session, payload, now=now)
    if trigger == "BOOKING_RESCHEDULED":
        return _rescheduled(session, payload, now=now)
    return CalcomEventResult.IGNORED


def _find(session: Session, uid: str | None) -> Appointment | None:
    if uid is None:
        return None
    return session.scalars(
        select(Appointment).where(Appointment.calcom_booking_uid == uid).with_for_update()
    ).first()


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def _created(
    session: Session, payload: CalcomWebhookPayload, *, now: datetime
) -> CalcomEventResult:
    if _find(session, payload.uid) is not None:
        return CalcomEventResult.UPDATED
    return _link_or_alert(session, payload, now=now, status="booked")


def _cancelled(
    session: Session, payload: CalcomWebhookPayload, *, now: datetime
) -> CalcomEventResult:
    appointment = _find(session, payload.uid)
    if appointment is None:
        _unknown(session, payload, now=now, trigger="BOOKING_CANCELLED")
        return CalcomEventResult.UNKNOWN
    appointment.status = "cancelled"
    appointment.updated_at = now
    session.flush()
    return CalcomEventResult.UPDATED


def _rescheduled(
    session: Session, payload: CalcomWebhookPayload, *, now: datetime
) -> CalcomEventResult:
    appointment = _find(session, payload.previous_uid) or _find(session, payload.uid)
    if appointment is None:
        return _link_or_alert(session, payload, now=now, status="rescheduled")
    appointment.calcom_booking_uid = payload.uid
    if payload.booking_id is not None:
        appointment.calcom_v2_booking_id = payload.booking_id
    appointment.starts_at = _utc(payload.start_time) or appointment.starts_at
    appointment.ends_at = _utc(payload.end_time) or appointment.ends_at
    appointment.status = "rescheduled"
    appointment.updated_at = now
    session.flush()
    return CalcomEventResult.UPDATED


def _link_or_alert(
    session: Session, payload: CalcomWebhookPayload, *, now: datetime, status: str
) -> CalcomEventResult:
    retell_call_id = payload.metadata.get(RETELL_CALL_METADATA_KEY)
    if not retell_call_id:
        _unknown(session, payload, now=now, trigger="BOOKING_CREATED")
        return CalcomEventResult.UNKNOWN
    call_id = session.scalar(select(Call.id).where(Call.retell_call_id == retell_call_id))
    if call_id is None:
        call = Call(retell_call_id=retell_call_id, created_at=now, updated_at=now)
        session.add(call)
        session.flush()
        call_id = call.id
    session.add(
        Appointment(
            call_id=call_id,
            event_type_id=payload.event_type_id,
            calcom_v2_booking_id=payload.booking_id,
            calcom_booking_uid=payload.uid,
            starts_at=_utc(payload.start_time),
            ends_at=_utc(payload.end_time),
            status=status,
            idempotency_key=payload.metadata.get(IDEMPOTENCY_METADATA_KEY),
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()
    return CalcomEventResult.LINKED


def _unknown(
    session: Session, payload: CalcomWebhookPayload, *, now: datetime, trigger: str
) -> None:
    record_alert(
        session,
        alert_type="unknown_calcom_booking",
        entity_type="calcom_booking",
        entity_id=payload.booking_id,
        description=f"Cal.com {trigger} for booking {payload.uid}, which no call explains",
        now=now,
        metadata={
            "calcom_booking_uid": payload.uid,
            "trigger_event": trigger,
            "metadata": dict(payload.metadata),
        },
    )
