"""Post-booking validation: five checks, in order, stopping at the first failure.

It runs after the booking's transaction has committed, so it checks what is
really stored (the predecessor ran it before the flags were written and rolled
back good bookings). One query: the appointment with its call's flags joined
alongside, on a connection or through the booking store's read-back; the checks
then run in order on that row. It reads columns rather than ORM objects, so
nothing stale from a session's identity map can pass for the database's state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from bookingguard.booking.metrics import BookingMetrics
from bookingguard.db.booking_queries import AppointmentReadBack, ReadBack, read_appointment

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
        self, connection: Connection, *, call_id: int, appointment_id: int | None = None
    ) -> ValidationResult:
        """Validate the appointment ``appointment_id`` (else the call's latest) against the call.

        ``connection`` may be a session's (``session.connection()``), to read inside its
        transaction.
        """
        started = self._timer()
        row = read_appointment(connection, call_id=call_id, appointment_id=appointment_id)
        return self._conclude(row, call_id=call_id, appointment_id=appointment_id, started=started)

    async def validate_read(
        self, read: ReadBack, *, call_id: int, appointment_id: int | None = None
    ) -> ValidationResult:
        """``validate`` over the booking store's read-back (``read``), timed from its start."""
        started = self._timer()
        row = await read()
        return self._conclude(row, call_id=call_id, appointment_id=appointment_id, started=started)

    def _conclude(
        self,
        row: AppointmentReadBack | None,
        *,
        call_id: int,
        appointment_id: int | None,
        started: float,
    ) -> ValidationResult:
        """The checks' verdict on the row read, timed from ``started`` and counted."""
        result = self._checks(row, call_id=call_id, appointment_id=appointment_id)
        duration = self._timer() - started
        result.details["duration_ms"] = round(duration * 1000, 3)
        if self._metrics is not None:
            outcome = "success" if result.success else "failure"
            self._metrics.validation_duration.labels(outcome=outcome).observe(duration)
            if result.reason is not None:
                self._metrics.validation_failures.labels(reason=result.reason).inc()
        return result

    def _checks(
        self, row: AppointmentReadBack | None, *, call_id: int, appointment_id: int | None
    ) -> ValidationResult:
        details: dict[str, Any] = {"call_id": call_id, "appointment_id": appointment_id}
        # 1. The appointment exists.
        if row is None:
            return ValidationResult(False, APPOINTMENT_NOT_FOUND, details)
        details["appointment_id"] = row.id
        # 2. It belongs to this row.
        if row.call_id != call_id:
            details["appointment_call_id"] = row.call_id
            return ValidationResult(False, CALL_LINKAGE_MISMATCH, details)
        # 3. It carries the Cal.com booking it was made from.
        if row.calcom_v2_booking_id is None or row.calcom_booking_uid is None:
            details["calcom_v2_booking_id"] = row.calcom_v2_booking_id
            details["calcom_booking_uid"] = row.calcom_booking_uid
            return ValidationResult(False, MISSING_CALCOM_BOOKING_ID, details)
        # 4. It is the booking just made, not an old one found by the row.
        age = (self._clock() - row.created_at).total_seconds()
        details["age_seconds"] = round(age, 3)
        if age > self._max_age:
            details["max_age_seconds"] = self._max_age
            return ValidationResult(False, APPOINTMENT_TOO_OLD, details)
        # 5. The call's flags say it was booked.
        flags = (
            {
                "appointment_made": row.appointment_made,
                "session_outcome": row.session_outcome,
                "appointment_link_status": row.appointment_link_status,
            }
            if row.flags_call_id is not None
            else None
        )
        details["call_flags"] = flags
        if (
            flags is None
            or row.appointment_made is not True
            or row.session_outcome != "appointment_booked"
            or row.appointment_link_status != "linked"
        ):
            return ValidationResult(False, CALL_FLAGS_INCONSISTENT, details)
        return ValidationResult(True, None, details)
