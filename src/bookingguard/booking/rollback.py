"""Writing down a booking that failed: the rollback, a refused booking, a failed compensation.

Each write is one transaction (a ``UnitOfWork``): the call's flags, the alert, the
review item and the outbox message commit together or not at all, so a notification
exists only for what was committed. ``write_failure_record`` writes a
``FailureRecord`` (the same one the spool keeps when the database is down) once: its
id is kept in the review item's context, and a record found there is not written again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.booking.errors import RollbackFailedError
from bookingguard.booking.metrics import BookingMetrics
from bookingguard.booking.types import BookingResult
from bookingguard.db.alerts import record_alert
from bookingguard.db.booking_queries.rows import NewAppointment
from bookingguard.db.booking_queries.statements import INSERT_APPOINTMENT, LINK_CALL
from bookingguard.db.models import (
    NOT_LIVE_APPOINTMENT_STATUSES,
    Appointment,
    Call,
    ManualReviewItem,
)
from bookingguard.db.spool import (
    CANCEL_UNRECORDED,
    CHANGE_FAILED,
    COMPENSATION_FAILED,
    RESCHEDULE_UNRECORDED,
    FailureRecord,
)
from bookingguard.db.uow import UnitOfWork
from bookingguard.notify import Message, enqueue
from bookingguard.review import file_for_review

__all__ = [
    "RECORDS_CONTEXT_KEY",
    "ROLLBACK_ALERT_TYPE",
    "record_booking_failure",
    "record_compensation_failure",
    "rollback_on_failure",
    "write_failure_record",
]

ROLLBACK_ALERT_TYPE = "appointment_validation_failed"
#: The review item's context key listing the ids of the failure records written into it.
RECORDS_CONTEXT_KEY = "failure_records"
#: What stands in for a NUL, which the database may refuse in text and JSON.
_NUL_STANDIN = "\ufffd"
_RETELL_CALL_ID_LENGTH = cast(String, Call.__table__.c.retell_call_id.type).length


def _storable(value: object) -> Any:
    """``value`` with every NUL in its strings (keys too) replaced, so any database stores it."""
    if isinstance(value, str):
        return value.replace("\x00", _NUL_STANDIN)
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def _jsonable(details: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _storable(json.loads(json.dumps(dict(details), default=str)))
    return result


def rollback_on_failure(
    sessions: sessionmaker[Session],
    *,
    call_id: int,
    reason: str,
    details: Mapping[str, Any],
    now: datetime,
    metrics: BookingMetrics | None = None,
) -> None:
    """Mark the call's booking as failed, with a critical alert and a top-priority review item.

    ``appointment_made`` and ``session_outcome`` change together (the database
    corrects a row where they disagree, and "booked" wins). Raises
    ``RollbackFailedError`` if the transaction fails; then nothing was written.
    """
    context = _jsonable(details)
    try:
        with UnitOfWork(sessions) as uow:
            session = uow.session
            changed = session.execute(
                update(Call)
                .where(Call.id == call_id)
                .values(
                    appointment_made=False,
                    session_outcome="creation_failed",
                    appointment_link_status="creation_failed",
                    appointment_linked_at=None,
                    booking_failed=True,
                    booking_failure_reason=reason,
                    requires_manual_processing=True,
                    updated_at=now,
                )
            )
            if getattr(changed, "rowcount", 0) != 1:
                raise RollbackFailedError(call_id, "no such call")
            alert = record_alert(
                session,
                alert_type=ROLLBACK_ALERT_TYPE,
                entity_type="call",
                entity_id=call_id,
                description=f"Booking of call {call_id} failed validation ({reason}); "
                "its flags were rolled back",
                now=now,
                metadata={
                    "reason": reason,
                    "details": context,
                    "action_taken": "flags_rolled_back",
                },
            )
            file_for_review(
                session,
                call_id=call_id,
                reason=ROLLBACK_ALERT_TYPE,
                priority=1,
                now=now,
                context={"validation_reason": reason, "details": context},
            )
            enqueue(
                session,
                Message(
                    kind=ROLLBACK_ALERT_TYPE,
                    subject=f"Booking rolled back for call {call_id}: {reason}",
                    severity=alert.severity,
                    body={"call_id": call_id, "reason": reason, "details": context},
                    fingerprints=(alert.fingerprint or "",),
                ),
                now=now,
            )
            uow.commit()
    except RollbackFailedError:
        if metrics is not None:
            metrics.rollbacks.labels(outcome="failed").inc()
        raise
    except Exception as exc:
        if metrics is not None:
            metrics.rollbacks.labels(outcome="failed").inc()
        raise RollbackFailedError(call_id, str(exc).splitlines()[0]) from exc
    if metrics is not None:
        metrics.rollbacks.labels(outcome="done").inc()


def record_change_failure(
    session: Session,
    *,
    call_id: int,
    reason: str,
    details: Mapping[str, Any],
    now: datetime,
) -> ManualReviewItem:
    """A move or cancellation that did not happen: the call needs a human, who finds what
    the caller asked for in the review item. The booking flags stay: the appointment is
    still what it was. Flushes only; returns the call's review item.
    """
    session.execute(
        update(Call)
        .where(Call.id == call_id)
        .values(requires_manual_processing=True, updated_at=now)
    )
    return file_for_review(
        session,
        call_id=call_id,
        reason=reason,
        priority=2,
        now=now,
        context={"change_failure": reason, "details": _jsonable(details)},
    )


def record_booking_failure(
    session: Session,
    *,
    call_id: int,
    reason: str,
    details: Mapping[str, Any],
    now: datetime,
) -> ManualReviewItem:
    """A booking that never happened (Cal.com refused, circuit open): flag the call for a human.

    A call that already holds another booking keeps its booked flags. Flushes only;
    returns the call's review item.
    """
    session.execute(
        update(Call)
        .where(Call.id == call_id)
        .values(
            booking_failed=True,
            booking_failure_reason=reason,
            requires_manual_processing=True,
            session_outcome=case(
                (Call.appointment_made.is_(True), Call.session_outcome), else_="creation_failed"
            ),
            appointment_link_status=case(
                (Call.appointment_made.is_(True), Call.appointment_link_status),
                else_="creation_failed",
            ),
            updated_at=now,
        )
    )
    return file_for_review(
        session,
        call_id=call_id,
        reason="booking_failed",
        priority=2,
        now=now,
        context={"booking_failure": reason, "details": _jsonable(details)},
    )


def record_compensation_failure(
    session: Session,
    *,
    call_id: int,
    calcom_uid: str,
    error: str,
    now: datetime,
) -> ManualReviewItem:
    """Cal.com holds a booking we could not record nor cancel: critical alert, review, notice.

    Flushes only; returns the call's review item.
    """
    details = {"calcom_booking_uid": calcom_uid, "error": error}
    alert = record_alert(
        session,
        alert_type="compensation_failed",
        entity_type="call",
        entity_id=call_id,
        description=f"Cal.com booking {calcom_uid} for call {call_id} could not be cancelled "
        "after the local write failed",
        now=now,
        metadata=details,
    )
    item = file_for_review(
        session,
        call_id=call_id,
        reason="compensation_failed",
        priority=1,
        now=now,
        context=details,
    )
    enqueue(
        session,
        Message(
            kind="compensation_failed",
            subject=f"Cal.com booking {calcom_uid} left uncancelled for call {call_id}",
            severity=alert.severity,
            body={"call_id": call_id, **details},
            fingerprints=(alert.fingerprint or "",),
        ),
        now=now,
    )
    return item


def write_failure_record(session: Session, record: FailureRecord) -> int:
    """Write ``record`` down unless it was before; the call's id. Flushes only.

    The call is ``record.call_id`` when that row exists, else the call with its Retell
    id, created if no webhook has announced it. The call row is locked first, so two
    writers of one record (a replay racing another) take turns, and the second finds
    the first's record id in the call's review items and writes nothing.
    """
    call_id = _locked_call(session, record)
    if record.kind == CANCEL_UNRECORDED:
        # Idempotent by itself: a live appointment is cancelled, a cancelled one stays.
        session.execute(
            update(Appointment)
            .where(
                Appointment.id == int(record.details["appointment_id"]),
                Appointment.status.not_in(NOT_LIVE_APPOINTMENT_STATUSES),
            )
            .values(status="cancelled", updated_at=record.at)
        )
        return call_id
    if record.kind == RESCHEDULE_UNRECORDED:
        _write_move(session, call_id, record)
        return call_id
    contexts = session.scalars(
        select(ManualReviewItem.context).where(ManualReviewItem.call_id == call_id)
    )
    if any(
        record.record_id in (context or {}).get(RECORDS_CONTEXT_KEY, ()) for context in contexts
    ):
        return call_id
    if record.reason == BookingResult.PREVIOUSLY_FAILED.value and session.scalar(
        select(Call.booking_failed).where(Call.id == call_id)
    ):
        # A retry's reminder of a failure the call already carries (a rollback's, say):
        # the reason written then stays. The failed request's own record, replayed
        # after the reminder, still writes its reason over this one.
        return call_id
    if record.kind == CHANGE_FAILED:
        item = record_change_failure(
            session, call_id=call_id, reason=record.reason, details=record.details, now=record.at
        )
    elif record.kind == COMPENSATION_FAILED:
        item = record_compensation_failure(
            session,
            call_id=call_id,
            calcom_uid=_storable(str(record.details.get("calcom_booking_uid", ""))),
            error=_storable(str(record.details.get("error", ""))),
            now=record.at,
        )
    else:
        item = record_booking_failure(
            session, call_id=call_id, reason=record.reason, details=record.details, now=record.at
        )
    context = dict(item.context or {})
    context[RECORDS_CONTEXT_KEY] = [*context.get(RECORDS_CONTEXT_KEY, ()), record.record_id]
    item.context = context
    session.flush()
    return call_id


def _write_move(session: Session, call_id: int, record: FailureRecord) -> None:
    """A ``RESCHEDULE_UNRECORDED`` record written, idempotent by itself: only while the
    old appointment is live, for once it is not, the move was overtaken (a webhook
    brought it along, or the caller cancelled since, which cancels the booking moved to
    as well); the booking moved to is stored unless a webhook stored it first. The new
    appointment first, as a reschedule stores it, so the call is never unlinked between."""
    details = record.details
    old_id = int(details["appointment_id"])
    old_status = session.scalar(
        select(Appointment.status).where(Appointment.id == old_id).with_for_update()
    )
    if old_status is None or old_status in NOT_LIVE_APPOINTMENT_STATUSES:
        return
    moved = NewAppointment.from_record_details(details, call_id=call_id, now=record.at)
    stored = session.scalar(
        select(Appointment.id).where(Appointment.calcom_booking_uid == moved.calcom_booking_uid)
    )
    if stored is None:
        session.execute(INSERT_APPOINTMENT, moved.params())
        session.execute(LINK_CALL, moved.params())
    session.execute(
        update(Appointment)
        .where(Appointment.id == old_id)
        .values(status="rescheduled", updated_at=record.at)
    )


def _locked_call(session: Session, record: FailureRecord) -> int:
    """The record's call, locked for this transaction (created when it does not exist yet)."""
    if record.call_id is not None:
        found = session.scalar(select(Call.id).where(Call.id == record.call_id).with_for_update())
        if found is not None:
            return found
    retell_call_id = _storable(record.retell_call_id)[:_RETELL_CALL_ID_LENGTH]
    by_retell_id = select(Call.id).where(Call.retell_call_id == retell_call_id).with_for_update()
    found = session.scalar(by_retell_id)
    if found is not None:
        return found
    call = Call(retell_call_id=retell_call_id, call_status="ongoing")
    try:
        with session.begin_nested():
            session.add(call)
    except IntegrityError:
        # Created meanwhile by a webhook or another writer, who has committed it.
        return session.scalars(by_retell_id).one()
    return call.id
