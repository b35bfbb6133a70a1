"""Writing down a booking that failed: the rollback, a refused booking, a failed compensation.

Each function owns one transaction (a ``UnitOfWork``): the call's flags, the
alert, the review item and the outbox message commit together or not at all,
so a notification exists only for what was committed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import case, update
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.booking.errors import RollbackFailedError
from bookingguard.booking.metrics import BookingMetrics
from bookingguard.db.alerts import record_alert
from bookingguard.db.models import Call
from bookingguard.db.uow import UnitOfWork
from bookingguard.notify import Message, enqueue
from bookingguard.review import file_for_review

__all__ = [
    "ROLLBACK_ALERT_TYPE",
    "record_booking_failure",
    "record_compensation_failure",
    "rollback_on_failure",
]

ROLLBACK_ALERT_TYPE = "appointment_validation_failed"


def _jsonable(details: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(dict(details), default=str))
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


def record_booking_failure(
    session: Session,
    *,
    call_id: int,
    reason: str,
    details: Mapping[str, Any],
    now: datetime,
) -> None:
    """A booking that never happened (Cal.com refused, circuit open): flag the call for a human.

    A call that already holds another booking keeps its booked flags. Flushes only.
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
    file_for_review(
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
) -> None:
    """Cal.com holds a booking we could not record nor cancel: critical alert, review, notice."""
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
    file_for_review(
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
