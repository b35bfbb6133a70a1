"""Cal.com booking webhooks applied to local appointments.

The database guarantees carry each change to the call: a new live appointment
links it; a call whose last live appointment is cancelled, rescheduled or rejected
is unlinked and its outcome moves off ``appointment_booked``.

Metadata is a claim, not proof: a booker can pre-fill it on a Cal.com booking page. A
booking we do not know attaches to a call only when the idempotency key in its
metadata is one the booking path issued, a claim row for that key with no Cal.com
booking yet (whatever its status): the delivery fills that row, which links its call
(and settles the claim of a booking path that crashed before recording it). Any other
booking was made elsewhere (the business's own booking page): it is stored with source
``calcom`` and no call, and no call row is ever created from metadata. Such a booking
whose metadata names one of our calls or keys raises an ``unverified_booking_metadata``
warning; one with no metadata of ours raises nothing. A rejection of a call's booking
raises an ``appointment_rejected`` alert and notifies.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bookingguard.booking.types import IDEMPOTENCY_METADATA_KEY, RETELL_CALL_METADATA_KEY
from bookingguard.calcom import CalcomWebhook, CalcomWebhookPayload
from bookingguard.db.alerts import record_alert
from bookingguard.db.models import (
    CLAIM_STATUS,
    NOT_LIVE_APPOINTMENT_STATUSES,
    Appointment,
    Call,
    WebhookEvent,
)
from bookingguard.notify.outbox import Message, enqueue

__all__ = ["CalcomEventResult", "apply_calcom_event"]

#: Cal.com's booking status in a delivery → ours, for a booking stored from it.
_STATUS_OF = {"ACCEPTED": "booked", "PENDING": "pending", "REJECTED": "rejected"}


class CalcomEventResult(enum.StrEnum):
    """What a delivery did."""

    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    UPDATED = "updated"
    LINKED = "linked"
    STORED = "stored"
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
    if trigger == "BOOKING_NO_SHOW_UPDATED":
        key = f"{key}:{'no_show' if payload.no_show else 'showed'}"
    if session.scalar(select(WebhookEvent.id).where(WebhookEvent.event_key == key)) is not None:
        return CalcomEventResult.DUPLICATE
    session.add(WebhookEvent(source="calcom", event_key=key, received_at=now))
    if trigger == "BOOKING_CREATED":
        return _created(session, payload, now=now, status="booked")
    if trigger == "BOOKING_REQUESTED":
        return _created(session, payload, now=now, status="pending")
    if trigger == "BOOKING_REJECTED":
        return _rejected(session, payload, now=now)
    if trigger == "BOOKING_CANCELLED":
        return _cancelled(session, payload, now=now)
    if trigger == "BOOKING_RESCHEDULED":
        return _rescheduled(session, payload, now=now)
    if trigger == "BOOKING_NO_SHOW_UPDATED":
        return _no_show_updated(session, payload, now=now)
    return CalcomEventResult.IGNORED


def _find(session: Session, uid: str | None) -> Appointment | None:
    if uid is None:
        return None
    return session.scalars(
        select(Appointment).where(Appointment.calcom_booking_uid == uid).with_for_update()
    ).first()


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def _set_status(appointment: Appointment, status: str, *, now: datetime) -> CalcomEventResult:
    if appointment.status == status:
        return CalcomEventResult.IGNORED
    appointment.status = status
    appointment.updated_at = now
    return CalcomEventResult.UPDATED


def _created(
    session: Session, payload: CalcomWebhookPayload, *, now: datetime, status: str
) -> CalcomEventResult:
    appointment = _find(session, payload.uid)
    if appointment is None:
        return _store(session, payload, now=now, status=status, trigger="BOOKING_CREATED")
    if status == "booked" and appointment.status == "pending":
        # Cal.com sends BOOKING_CREATED when the host confirms a requested booking.
        result = _set_status(appointment, "booked", now=now)
        session.flush()
        return result
    return CalcomEventResult.IGNORED


def _rejected(
    session: Session, payload: CalcomWebhookPayload, *, now: datetime
) -> CalcomEventResult:
    appointment = _find(session, payload.uid)
    if appointment is None:
        return _store(session, payload, now=now, status="rejected", trigger="BOOKING_REJECTED")
    result = _set_status(appointment, "rejected", now=now)
    session.flush()
    if appointment.call_id is not None:
        _notify_rejection(session, appointment, payload, now=now)
    return result


def _cancelled(
    session: Session, payload: CalcomWebhookPayload, *, now: datetime
) -> CalcomEventResult:
    appointment = _find(session, payload.uid)
    if appointment is None:
        claim = _claim_of(session, payload)
        if claim is not None:
            # Its creation never reached us: the claim's one booking is cancelled.
            return _fill(session, claim, payload, now=now, status="cancelled")
        if _claims_ours(payload):
            _unknown(session, payload, now=now, trigger="BOOKING_CANCELLED")
            return CalcomEventResult.UNKNOWN
        return CalcomEventResult.IGNORED
    result = _set_status(appointment, "cancelled", now=now)
    session.flush()
    return result


def _rescheduled(
    session: Session, payload: CalcomWebhookPayload, *, now: datetime
) -> CalcomEventResult:
    """The old appointment becomes ``rescheduled``; the new booking is stored with its call."""
    old = _find(session, payload.previous_uid)
    new = _find(session, payload.uid)
    if old is None:
        if new is not None:
            return CalcomEventResult.IGNORED
        return _store(session, payload, now=now, status="booked", trigger="BOOKING_RESCHEDULED")
    if new is None:
        # The new one first: the call keeps a live appointment throughout.
        session.add(
            _appointment(
                payload,
                now=now,
                status=_STATUS_OF.get((payload.status or "").upper(), "booked"),
                call_id=old.call_id,
                customer_id=old.customer_id,
                source=old.source,
                idempotency_key=None,
            )
        )
        session.flush()
    result = _set_status(old, "rescheduled", now=now)
    session.flush()
    return CalcomEventResult.LINKED if new is None else result


def _no_show_updated(
    session: Session, payload: CalcomWebhookPayload, *, now: datetime
) -> CalcomEventResult:
    appointment = _find(session, payload.uid)
    if appointment is None:
        return CalcomEventResult.IGNORED
    if payload.no_show:
        result = _set_status(appointment, "no_show", now=now)
    elif appointment.status == "no_show":
        result = _set_status(appointment, "booked", now=now)
    else:
        return CalcomEventResult.IGNORED
    session.flush()
    return result


def _claims_ours(payload: CalcomWebhookPayload) -> bool:
    return bool(
        payload.metadata.get(IDEMPOTENCY_METADATA_KEY)
        or payload.metadata.get(RETELL_CALL_METADATA_KEY)
    )


def _store(
    session: Session,
    payload: CalcomWebhookPayload,
    *,
    now: datetime,
    status: str,
    trigger: str,
) -> CalcomEventResult:
    """A booking we hold no appointment for: our claim's (filled, linking its call), or
    made elsewhere (stored with no call; alerted when its metadata claims to be ours)."""
    claim = _claim_of(session, payload)
    if claim is not None:
        return _fill(session, claim, payload, now=now, status=status)
    appointment = _appointment(
        payload,
        now=now,
        status=status,
        call_id=None,
        customer_id=None,
        source="calcom",
        idempotency_key=None,
    )
    session.add(appointment)
    session.flush()
    if not _claims_ours(payload):
        return CalcomEventResult.STORED
    _unverified(session, payload, appointment, now=now, trigger=trigger)
    return CalcomEventResult.UNKNOWN


def _claim_of(session: Session, payload: CalcomWebhookPayload) -> Appointment | None:
    """The claim the booking path issued for the key in the booking's metadata, if it has
    no Cal.com booking yet."""
    key = payload.metadata.get(IDEMPOTENCY_METADATA_KEY)
    if not key:
        return None
    return session.scalars(
        select(Appointment)
        .where(Appointment.idempotency_key == key, Appointment.calcom_booking_uid.is_(None))
        .with_for_update()
    ).first()


def _fill(
    session: Session,
    claim: Appointment,
    payload: CalcomWebhookPayload,
    *,
    now: datetime,
    status: str,
) -> CalcomEventResult:
    """Our claim's booking: recorded in the claim. A claim the booking path already closed
    (its booking cancelled by compensation) stays closed."""
    claim.calcom_booking_uid = payload.uid
    claim.calcom_v2_booking_id = payload.booking_id
    claim.event_type_id = payload.event_type_id
    claim.starts_at = _utc(payload.start_time)
    claim.ends_at = _utc(payload.end_time)
    claim.updated_at = now
    if claim.status == CLAIM_STATUS:
        claim.status = status
    session.flush()
    if claim.call_id is not None and claim.status not in NOT_LIVE_APPOINTMENT_STATUSES:
        # The call is booked by it: not a failed booking (its review item stays open).
        session.execute(
            update(Call)
            .where(Call.id == claim.call_id, Call.booking_failed.is_(True))
            .values(booking_failed=False, booking_failure_reason=None, updated_at=now)
        )
    if claim.status == "rejected":
        _notify_rejection(session, claim, payload, now=now)
    return CalcomEventResult.LINKED


def _appointment(
    payload: CalcomWebhookPayload,
    *,
    now: datetime,
    status: str,
    call_id: int | None,
    customer_id: int | None,
    source: str,
    idempotency_key: str | None,
) -> Appointment:
    return Appointment(
        call_id=call_id,
        customer_id=customer_id,
        event_type_id=payload.event_type_id,
        calcom_v2_booking_id=payload.booking_id,
        calcom_booking_uid=payload.uid,
        starts_at=_utc(payload.start_time),
        ends_at=_utc(payload.end_time),
        status=status,
        source=source,
        idempotency_key=idempotency_key,
        created_at=now,
        updated_at=now,
    )


def _notify_rejection(
    session: Session, appointment: Appointment, payload: CalcomWebhookPayload, *, now: datetime
) -> None:
    """The caller was told "requested"; the host said no: an alert and a notice."""
    details = {
        "call_id": appointment.call_id,
        "calcom_booking_uid": payload.uid,
        "starts_at": appointment.starts_at.isoformat() if appointment.starts_at else None,
        "rejection_reason": payload.rejection_reason,
    }
    alert = record_alert(
        session,
        alert_type="appointment_rejected",
        entity_type="appointment",
        entity_id=appointment.id,
        description=(
            f"Cal.com booking {payload.uid} for call {appointment.call_id} was rejected"
            + (f": {payload.rejection_reason}" if payload.rejection_reason else "")
        ),
        now=now,
        metadata=details,
    )
    enqueue(
        session,
        Message(
            kind="alert",
            subject=f"[{alert.severity.upper()}] appointment_rejected: booking {payload.uid}",
            severity=alert.severity,
            body={
                "alert_type": "appointment_rejected",
                "count": 1,
                "samples": [{"entity_type": "appointment", "entity_id": appointment.id, **details}],
            },
            fingerprints=(alert.fingerprint or "",),
        ),
        now=now,
    )


def _unverified(
    session: Session,
    payload: CalcomWebhookPayload,
    appointment: Appointment,
    *,
    now: datetime,
    trigger: str,
) -> None:
    """A booking whose metadata names our call or key, but no claim we issued for it."""
    retell_call_id = payload.metadata.get(RETELL_CALL_METADATA_KEY)
    named_call = (
        session.scalar(select(Call.id).where(Call.retell_call_id == retell_call_id))
        if retell_call_id
        else None
    )
    record_alert(
        session,
        alert_type="unverified_booking_metadata",
        entity_type="appointment",
        entity_id=appointment.id,
        description=(
            f"Cal.com {trigger} for booking {payload.uid}: its metadata names our"
            f" {'call ' + retell_call_id if retell_call_id else 'idempotency key'}, but it"
            " matches no booking we issued; stored as an external booking, no call changed"
        ),
        now=now,
        metadata={
            "calcom_booking_uid": payload.uid,
            "trigger_event": trigger,
            "metadata": dict(payload.metadata),
            "named_call_id": named_call,
        },
    )


def _unknown(
    session: Session, payload: CalcomWebhookPayload, *, now: datetime, trigger: str
) -> None:
    record_alert(
        session,
        alert_type="unknown_calcom_booking",
        entity_type="calcom_booking",
        entity_id=payload.booking_id,
        description=(
            f"Cal.com {trigger} for booking {payload.uid}, which claims our metadata "
            "but matches no call or appointment"
        ),
        now=now,
        metadata={
            "calcom_booking_uid": payload.uid,
            "trigger_event": trigger,
            "metadata": dict(payload.metadata),
        },
    )
