"""``BookingService.book``: the booking path, steps 1 to 6.

1. Idempotency: a request whose key (Retell call id + event type + slot, or given)
   already has an appointment returns it; nothing is sent to Cal.com.
2. The Cal.com create runs under the circuit ``appointment_booking:event_type:{id}``,
   retried on transient failures, never booking twice (``GuardedCalcom``).
3. The appointment and the call's flags are written in one transaction.
4. Post-booking validation reads back what was committed.
5. A failed validation rolls the call's flags back (alert, review item, outbox).
6. A Cal.com booking we could not keep is cancelled (retried); if that fails too,
   a critical alert and a review item say so (``Compensation``).

Every outcome that has the caller told "we'll call you back" is written down first,
whatever raised on the way (``FailureRecorder``): in the database, else in the spool.
The service depends on a ``BookingStore`` for all of its database work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bookingguard.booking.changes import AppointmentChanges
from bookingguard.booking.compensation import Compensation
from bookingguard.booking.errors import RollbackFailedError
from bookingguard.booking.failures import FailureRecorder
from bookingguard.booking.guarded_calcom import CreateFailure, GuardedCalcom, is_transient
from bookingguard.booking.key_locks import KeyLocks
from bookingguard.booking.metrics import BookingMetrics
from bookingguard.booking.ports import Breaker, CalcomBookings, FailureSpool, Retrier
from bookingguard.booking.store import (
    AppointmentReadBack,
    BookingStore,
    NewAppointment,
    ReadBack,
)
from bookingguard.booking.types import (
    IDEMPOTENCY_METADATA_KEY,
    RETELL_CALL_METADATA_KEY,
    BookingOutcome,
    BookingRequest,
    BookingResult,
)
from bookingguard.booking.validation import PostBookingValidator, ValidationResult
from bookingguard.calcom import (
    CalcomBooking,
    CalcomError,
    CalcomMissingFields,
    CalcomSlotUnavailableError,
    NewBooking,
)
from bookingguard.resilience import CircuitOpenError

__all__ = ["BookingService"]

log = logging.getLogger(__name__)


#: How a retried request whose appointment is already stored ends, by the appointment's status.
_STORED_RESULTS = {
    "cancelled": BookingResult.PREVIOUSLY_FAILED,
    "pending": BookingResult.PENDING,
}


class BookingService:
    """Books appointments through Cal.com so that the call row never lies."""

    def __init__(
        self,
        *,
        store: BookingStore,
        calcom: CalcomBookings,
        breaker: Breaker,
        retrier: Retrier,
        validator: PostBookingValidator,
        clock: Callable[[], datetime],
        spool: FailureSpool,
        metrics: BookingMetrics | None = None,
    ) -> None:
        self._store = store
        self._calcom = GuardedCalcom(calcom=calcom, breaker=breaker, retrier=retrier)
        self._failures = FailureRecorder(store=store, spool=spool, clock=clock)
        self._compensation = Compensation(
            calcom=self._calcom, failures=self._failures, metrics=metrics
        )
        self._validator = validator
        self._clock = clock
        self._metrics = metrics
        self._locks = KeyLocks()
        self._changes = AppointmentChanges(
            store=store, calcom=self._calcom, failures=self._failures, clock=clock
        )

    @property
    def changes(self) -> AppointmentChanges:
        """Free slots, and moving or cancelling a call's appointment."""
        return self._changes

    @property
    def failures(self) -> FailureRecorder:
        """Where failed bookings are written down (the database, else the spool)."""
        return self._failures

    @property
    def store(self) -> BookingStore:
        """Where the service reads and writes bookings."""
        return self._store

    async def aclose(self) -> None:
        """Close the store's connections; the engine is its owner's to dispose."""
        await self._store.aclose()

    async def book(self, request: BookingRequest) -> BookingOutcome:
        """Book ``request`` once, however often it is asked; never leaves a phantom booking."""
        if request.start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        try:
            # The key is built inside: a start at the edge of the calendar can overflow it.
            async with self._locks.hold(request.key):
                outcome = await self._book(request)
        except Exception as exc:
            log.exception("booking for call %r failed unexpectedly", request.retell_call_id)
            outcome = await self._unexpected(request, exc)
        if self._metrics is not None:
            self._metrics.bookings.labels(result=outcome.result.value).inc()
        return outcome

    async def _unexpected(self, request: BookingRequest, exc: Exception) -> BookingOutcome:
        """A bug or an outage we did not foresee: the call filed for review, by its Retell id."""
        details = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        call_id = await self._failures.booking_failed(
            request.retell_call_id,
            call_id=None,
            reason=BookingResult.INTERNAL_ERROR.value,
            details=details,
        )
        return BookingOutcome(BookingResult.INTERNAL_ERROR, call_id=call_id, details=details)

    async def _book(self, request: BookingRequest) -> BookingOutcome:
        key = request.key
        call_id, stored = await self._store.look_up(request.retell_call_id, key)
        if stored is not None:
            result = _STORED_RESULTS.get(stored.status, BookingResult.ALREADY_BOOKED)
            return BookingOutcome(
                result,
                call_id=call_id,
                appointment_id=stored.appointment_id,
                start=stored.start,
                calcom_booking_uid=stored.calcom_booking_uid,
            )
        new = NewBooking(
            start=request.start,
            event_type_id=request.event_type_id,
            name=request.name,
            time_zone=request.time_zone,
            email=request.email,
            phone_number=request.phone,
            language=request.language,
            phone=request.phone,
            responses=request.responses,
            length_minutes=request.length_minutes,
            metadata={
                IDEMPOTENCY_METADATA_KEY: key,
                RETELL_CALL_METADATA_KEY: request.retell_call_id,
            },
        )
        created = await self._calcom.create(new, key)
        if isinstance(created, CreateFailure):
            return await self._refused(
                created, call_id=call_id, retell_call_id=request.retell_call_id
            )
        return await self._record(
            created, call_id=call_id, key=key, retell_call_id=request.retell_call_id
        )

    async def _refused(
        self, failure: CreateFailure, *, call_id: int, retell_call_id: str
    ) -> BookingOutcome:
        """Cal.com booked nothing: say why, and file the call for review (unless the slot
        was simply taken)."""
        exc = failure.error
        if isinstance(exc, CalcomMissingFields):
            return BookingOutcome(
                BookingResult.NEEDS_INFO, call_id=call_id, details={"missing": exc.fields}
            )
        if isinstance(exc, CalcomSlotUnavailableError):
            return BookingOutcome(
                BookingResult.SLOT_UNAVAILABLE, call_id=call_id, details={"error": exc.message}
            )
        if isinstance(exc, CircuitOpenError):
            result = BookingResult.CIRCUIT_OPEN
        elif is_transient(exc):
            result = BookingResult.CALCOM_UNAVAILABLE
        elif isinstance(exc, CalcomError):
            result = BookingResult.CALCOM_REJECTED
        else:
            raise exc
        details = failure.details
        await self._failures.booking_failed(
            retell_call_id, call_id=call_id, reason=result.value, details=details
        )
        return BookingOutcome(
            result, call_id=call_id, retry_after=failure.retry_after, details=details
        )

    # -- steps 3 to 6: record, validate, roll back, compensate ---------------------

    async def _record(
        self, booking: CalcomBooking, *, call_id: int, key: str, retell_call_id: str
    ) -> BookingOutcome:
        appointment = NewAppointment(
            call_id=call_id,
            event_type_id=booking.event_type_id,
            calcom_v2_booking_id=booking.id,
            calcom_booking_uid=booking.uid,
            starts_at=booking.start,
            ends_at=booking.end,
            idempotency_key=key,
            now=self._clock(),
            status="pending" if booking.is_pending else "booked",
        )

        async def validate(appointment_id: int, read: ReadBack) -> ValidationResult:
            return await self._validate(read, call_id=call_id, appointment_id=appointment_id)

        try:
            appointment_id, result = await self._store.write_and_link(appointment, validate)
        except IntegrityError:
            return await self._resolve_conflict(
                booking, call_id=call_id, key=key, retell_call_id=retell_call_id
            )
        except SQLAlchemyError as exc:
            log.error("local write of Cal.com booking %s failed", booking.uid, exc_info=True)
            return await self._write_failed(
                booking, call_id=call_id, error=str(exc), retell_call_id=retell_call_id
            )
        return await self._conclude(
            booking,
            call_id=call_id,
            appointment_id=appointment_id,
            result=result,
            retell_call_id=retell_call_id,
        )

    async def _validate(
        self, read: ReadBack, *, call_id: int, appointment_id: int
    ) -> ValidationResult:
        """Step 4; a validation that cannot read the database fails rather than passes."""
        try:
            return await self._validator.validate_read(
                read, call_id=call_id, appointment_id=appointment_id
            )
        except SQLAlchemyError as exc:
            log.error("post-booking validation of call %s failed to run", call_id, exc_info=exc)
            return ValidationResult(
                False,
                "validation_error",
                {"call_id": call_id, "appointment_id": appointment_id, "error": str(exc)},
            )

    async def _resolve_conflict(
        self, booking: CalcomBooking, *, call_id: int, key: str, retell_call_id: str
    ) -> BookingOutcome:
        """Another writer stored this key or this Cal.com booking first (a retry, a webhook)."""
        stored = await self._store.claim_stored(key, booking.uid)
        if stored is None:
            return await self._write_failed(
                booking, call_id=call_id, error="conflicting write", retell_call_id=retell_call_id
            )
        if stored.calcom_booking_uid == booking.uid:
            appointment_id = stored.appointment_id

            async def read() -> AppointmentReadBack | None:
                return await self._store.read_back(call_id, appointment_id)

            result = await self._validate(read, call_id=call_id, appointment_id=appointment_id)
            return await self._conclude(
                booking,
                call_id=call_id,
                appointment_id=appointment_id,
                result=result,
                retell_call_id=retell_call_id,
            )
        await self._compensation.cancel(booking, call_id=call_id, retell_call_id=retell_call_id)
        return BookingOutcome(
            BookingResult.ALREADY_BOOKED,
            call_id=call_id,
            appointment_id=stored.appointment_id,
            start=stored.start,
            calcom_booking_uid=stored.calcom_booking_uid,
        )

    async def _write_failed(
        self, booking: CalcomBooking, *, call_id: int, error: str, retell_call_id: str
    ) -> BookingOutcome:
        """Step 6: Cal.com booked, we could not record it: cancel it and file the call."""
        details = {"error": error.splitlines()[0], "calcom_booking_uid": booking.uid}
        if await self._compensation.cancel(booking, call_id=call_id, retell_call_id=retell_call_id):
            await self._failures.booking_failed(
                retell_call_id,
                call_id=call_id,
                reason=BookingResult.LOCAL_WRITE_FAILED.value,
                details=details,
            )
        return BookingOutcome(
            BookingResult.LOCAL_WRITE_FAILED,
            call_id=call_id,
            calcom_booking_uid=booking.uid,
            details=details,
        )

    async def _conclude(
        self,
        booking: CalcomBooking,
        *,
        call_id: int,
        appointment_id: int,
        result: ValidationResult,
        retell_call_id: str,
    ) -> BookingOutcome:
        """Steps 4 and 5: a validated booking is booked; otherwise roll back and compensate."""
        if result.success:
            return BookingOutcome(
                BookingResult.PENDING if booking.is_pending else BookingResult.BOOKED,
                call_id=call_id,
                appointment_id=appointment_id,
                start=booking.start,
                calcom_booking_uid=booking.uid,
                details=result.details,
            )
        reason = result.reason or "validation_failed"
        await self._roll_back(
            call_id, reason=reason, details=result.details, retell_call_id=retell_call_id
        )
        if await self._compensation.cancel(booking, call_id=call_id, retell_call_id=retell_call_id):
            await self._store.cancel_appointment(appointment_id, self._clock())
        return BookingOutcome(
            BookingResult.VALIDATION_FAILED,
            call_id=call_id,
            appointment_id=appointment_id,
            calcom_booking_uid=booking.uid,
            details={"reason": reason, **result.details},
        )

    async def _roll_back(
        self, call_id: int, *, reason: str, details: dict[str, Any], retell_call_id: str
    ) -> None:
        """Step 5, counted; a rollback that fails is logged, and the call's failure written
        down as a booking that failed (the spool's record while the database is down)."""
        try:
            await self._store.roll_back(call_id, reason=reason, details=details, now=self._clock())
        except RollbackFailedError:
            log.critical("rollback of call %s failed", call_id, exc_info=True)
            await self._failures.booking_failed(
                retell_call_id, call_id=call_id, reason=reason, details=details
            )
            outcome = "failed"
        else:
            outcome = "done"
        if self._metrics is not None:
            self._metrics.rollbacks.labels(outcome=outcome).inc()
