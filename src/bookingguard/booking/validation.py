"""Post-booking validation: five checks, in order, stopping at the first failure.

It runs after the booking's transaction has committed, so it checks what is
really stored (the predecessor ran it before the flags were written and rolled
back good bookings). Two queries at most: the appointment, then its call. Both
read columns rather than ORM objects, so nothing stale from a session's identity
map can pass for the database's state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bookingguard.booking.metrics import BookingMetrics
from bookingguard.db.models import Appointment, Call

__all__ = [
    "APPOINTMENT_NOT_FOUND",
    "APPOINTMENT_TOO_OLD",
    "CALL_FLAGS_INCONSISTENT",
    "CALL_LINKAGE_MISMATCH",
    "MISSING_CALCOM_BOOKING_ID",
    "PostBookingValidator",
    "ValidationResult",
]

APPOINTMENT_NOT_FOUND = "appointment_not_found"
CALL_LINKAGE_MISMATCH = "call_linkage_mismatch"
MISSING_CALCOM_BOOKING_ID = "missing_calcom_booking_id"
APPOINTMENT_TOO_OLD = "appointment_too_old"
CALL_FLAGS_INCONSISTENT = "call_flags_inconsistent"


@dataclass(frozen=True)
class ValidationResult:
    """The verdict: ``reason`` names the first failed check; ``details`` say what was seen."""

    success: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class PostBookingValidator:
    """Checks that a booking is really stored and its call really says so."""

    def __init__(
        self,
        *,
        max_appointment_age_seconds: float,
        clock: Callable[[], datetime],
        metrics: BookingMetrics | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._max_age = max_appointment_age_seconds
        self._clock = clock
        self._metrics = metrics
        self._timer = timer

    def validate(
        self, session: Session, *, call_id: int, appointment_id: int | None = None
    ) -> ValidationResult:
        """Validate the appointment ``appointment_id`` (else the call's latest) against the call."""
        started = self._timer()
        result = self._checks(session, call_id=call_id, appointment_id=appointment_id)
        duration = self._timer() - started
        result.details["duration_ms"] = round(duration * 1000, 3)
        if self._metrics is not None:
            outcome = "success" if result.success else "failure"
            self._metrics.validation_duration.labels(outcome=outcome).observe(duration)
            if result.reason is not None:
                self._metrics.validation_failures.labels(reason=result.reason).inc()
        return result

    def _checks(
        self, session: Session, *, call_id: int, appointment_id: int | None
    ) -> ValidationResult:
        columns = select(
            Appointment.id,
            Appointment.call_id,
            Appointment.calcom_v2_booking_id,
            Appointment.calcom_booking_uid,
            Appointment.created_at,
        )
        if appointment_id is not None:
            query = columns.where(Appointment.id == appointment_id)
        else:
            query = (
                columns.where(Appointment.call_id == call_id)
                .order_by(Appointment.created_at.desc(), Appointment.id.desc())
                .limit(1)
            )
        appointment = session.execute(query).first()
        details: dict[str, Any] = {"call_id": call_id, "appointment_id": appointment_id}
        # 1. The appointment exists.
        if appointment is None:
            return ValidationResult(False, APPOINTMENT_NOT_FOUND, details)
        details["appointment_id"] = appointment.id
        # 2. It belongs to this call.
        if appointment.call_id != call_id:
            details["appointment_call_id"] = appointment.call_id
            return ValidationResult(False, CALL_LINKAGE_MISMATCH, details)
        # 3. It carries the Cal.com booking it was made from.
        if appointment.calcom_v2_booking_id is None or appointment.calcom_booking_uid is None:
            details["calcom_v2_booking_id"] = appointment.calcom_v2_booking_id
            details["calcom_booking_uid"] = appointment.calcom_booking_uid
            return ValidationResult(False, MISSING_CALCOM_BOOKING_ID, details)
        # 4. It is the booking just made, not an old one found by the call.
        age = (self._clock() - appointment.created_at).total_seconds()
        details["age_seconds"] = round(age, 3)
        if age > self._max_age:
            details["max_age_seconds"] = self._max_age
            return ValidationResult(False, APPOINTMENT_TOO_OLD, details)
        # 5. The call's flags say it was booked.
        call = session.execute(
            select(Call.appointment_made, Call.session_outcome, Call.appointment_link_status).where(
                Call.id == call_id
            )
        ).first()
        flags = (
            {
                "appointment_made": call.appointment_made,
                "session_outcome": call.session_outcome,
                "appointment_link_status": call.appointment_link_status,
            }
            if call is not None
            else None
        )
        details["call_flags"] = flags
        if (
            call is None
            or call.appointment_made is not True
            or call.session_outcome != "appointment_booked"
            or call.appointment_link_status != "linked"
        ):
            return ValidationResult(False, CALL_FLAGS_INCONSISTENT, details)
        return ValidationResult(True, None, details)
