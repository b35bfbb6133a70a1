"""Steps 3 to 6 of the booking path: record, validate, roll back, compensate.

``BookingRecorder.record`` takes a booking Cal.com made for the key the request holds:
it fills the key's claim with it and links the call (one transaction), reads back what
was committed and validates it, and rolls the call back and cancels the booking when
the validation fails or the booking could not be stored. A booking is cancelled at
Cal.com only when the database can say it is not stored (``_write_unknown``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bookingguard.booking.compensation import Compensation
from bookingguard.booking.errors import RollbackFailedError
from bookingguard.booking.failures import FailureRecorder
from bookingguard.booking.metrics import BookingMetrics
from bookingguard.booking.store import (
    AppointmentReadBack,
    BookingStore,
    NewAppointment,
    ReadBack,
    StoredAppointment,
)
from bookingguard.booking.types import BookingOutcome, BookingResult
from bookingguard.booking.validation import PostBookingValidator, ValidationResult
from bookingguard.calcom import CalcomBooking
from bookingguard.resilience.retry import RetryPolicy, retry_async

__all__ = ["READ_BACK_RETRY", "UNREAD", "Attempt", "BookingRecorder"]

log = logging.getLogger(__name__)

#: The read-back after a booking is stored, read again on fresh connections when the
#: write's own dropped: two more tries within a second, while the caller waits.
READ_BACK_RETRY = RetryPolicy(attempts=2, base_delay=0.1, budget_seconds=1.0)

T = TypeVar("T")

#: The validation's reason when the read-back could not run at all (the database is gone).
UNREAD = "validation_error"


async def _read_again(read: Callable[[], Awaitable[T]]) -> T:
    """``read`` on fresh connections while a dropped one fails it (``READ_BACK_RETRY``)."""
    return await retry_async(
        read, policy=READ_BACK_RETRY, is_retryable=lambda exc: isinstance(exc, SQLAlchemyError)
    )


@dataclass(frozen=True)
class Attempt:
    """The request that holds its key's claim: whose call, which key, which claim row."""

    retell_call_id: str
    call_id: int
    key: str
    claim: StoredAppointment


class BookingRecorder:
    """Records, validates, rolls back and compensates the bookings Cal.com made."""

    def __init__(
        self,
        *,
        store: BookingStore,
        compensation: Compensation,
        failures: FailureRecorder,
        validator: PostBookingValidator,
        clock: Callable[[], datetime],
        metrics: BookingMetrics | None = None,
    ) -> None:
        self._store = store
        self._compensation = compensation
        self._failures = failures
        self._validator = validator
        self._clock = clock
        self._metrics = metrics

    async def record(self, booking: CalcomBooking, attempt: Attempt) -> BookingOutcome:
        """Steps 3 to 6 for ``booking``, which Cal.com made for ``attempt``'s key."""
        call_id = attempt.call_id
        appointment = NewAppointment(
            call_id=call_id,
            event_type_id=booking.event_type_id,
            calcom_v2_booking_id=booking.id,
            calcom_booking_uid=booking.uid,
            starts_at=booking.start,
            ends_at=booking.end,
            idempotency_key=attempt.key,
            now=self._clock(),
            status="pending" if booking.is_pending else "booked",
        )

        async def validate(appointment_id: int, read: ReadBack) -> ValidationResult:
            return await self._validate(read, call_id=call_id, appointment_id=appointment_id)

        try:
            appointment_id, result = await self._store.write_and_link(appointment, validate)
        except IntegrityError:
            return await self._resolve_conflict(booking, attempt)
        except SQLAlchemyError as exc:
            log.error("local write of Cal.com booking %s failed", booking.uid, exc_info=True)
            try:
                written = await self._written_anyway(booking, attempt)
            except SQLAlchemyError:
                return await self._write_unknown(booking, attempt, error=str(exc))
            if written is None:
                return await self._write_failed(booking, attempt, error=str(exc))
            return await self._stored(booking, attempt, written.appointment_id)
        return await self._conclude(booking, attempt, appointment_id=appointment_id, result=result)

    async def _stored(
        self, booking: CalcomBooking, attempt: Attempt, appointment_id: int
    ) -> BookingOutcome:
        """``booking`` is stored in ``appointment_id``, though not by this request's write:
        read it back on a fresh connection, validate it, and conclude."""
        call_id = attempt.call_id

        async def fresh() -> AppointmentReadBack | None:
            return await self._store.read_back(call_id, appointment_id)

        result = await self._validate(fresh, call_id=call_id, appointment_id=appointment_id)
        return await self._conclude(booking, attempt, appointment_id=appointment_id, result=result)

    async def _written_anyway(
        self, booking: CalcomBooking, attempt: Attempt
    ) -> StoredAppointment | None:
        """The key's row, if the write that raised committed all the same.

        A connection cut while its statement commits raises although the row is stored,
        and a concurrent retry may already have been told "booked" from it: cancelling
        the booking then would make that answer a phantom. Read on a fresh connection
        (``READ_BACK_RETRY``); None when the row holds no booking. Raises
        ``SQLAlchemyError`` when it cannot be read (``_write_unknown``).
        """

        async def stored() -> StoredAppointment | None:
            return await self._store.claim_stored(attempt.key, booking.uid)

        row = await _read_again(stored)
        if row is None or row.claimed or row.calcom_booking_uid != booking.uid:
            return None
        log.warning("booking %s was stored although its write raised", booking.uid)
        return row

    async def _validate(
        self, read: ReadBack, *, call_id: int, appointment_id: int
    ) -> ValidationResult:
        """Step 4. A read-back that cannot run (its connection dropped) is run again on a
        fresh one (``READ_BACK_RETRY``): a lost connection is no inconsistency, and failing
        on it would cancel a booking that is stored. One that still cannot run fails
        rather than passes. The first read goes straight, without the retry's set-up
        (about 40 us): every booking makes it."""

        async def fresh() -> AppointmentReadBack | None:
            return await self._store.read_back(call_id, appointment_id)

        async def validate(using: ReadBack) -> ValidationResult:
            return await self._validator.validate_read(
                using, call_id=call_id, appointment_id=appointment_id
            )

        async def validate_fresh() -> ValidationResult:
            return await validate(fresh)

        try:
            try:
                return await validate(read)
            except SQLAlchemyError:
                log.warning("read-back of call %s failed; reading again", call_id)
            return await _read_again(validate_fresh)
        except SQLAlchemyError as exc:
            log.error("post-booking validation of call %s failed to run", call_id, exc_info=exc)
            return ValidationResult(
                False,
                UNREAD,
                {"call_id": call_id, "appointment_id": appointment_id, "error": str(exc)},
            )

    async def _resolve_conflict(self, booking: CalcomBooking, attempt: Attempt) -> BookingOutcome:
        """The claim was filled first (the Cal.com webhook of this booking), or this Cal.com
        booking is stored elsewhere."""
        call_id = attempt.call_id
        stored = await self._store.claim_stored(attempt.key, booking.uid)
        if stored is None or stored.claimed:
            return await self._write_failed(booking, attempt, error="conflicting write")
        if stored.calcom_booking_uid == booking.uid:
            return await self._stored(booking, attempt, stored.appointment_id)
        await self._compensation.cancel(
            booking, call_id=call_id, retell_call_id=attempt.retell_call_id
        )
        return BookingOutcome(
            BookingResult.ALREADY_BOOKED,
            call_id=call_id,
            appointment_id=stored.appointment_id,
            start=stored.start,
            calcom_booking_uid=stored.calcom_booking_uid,
        )

    async def _write_unknown(
        self, booking: CalcomBooking, attempt: Attempt, *, error: str
    ) -> BookingOutcome:
        """The write raised and the key's row cannot be read: the database is unreachable,
        and whether the booking is stored is unknown. The Cal.com booking is kept.

        Cancelling it while the database cannot record that would leave the row to say
        "booked": a write that committed as its connection was cut, or the Cal.com
        webhook filling the claim once the database is back, and a retry told "booked"
        from it with nothing at Cal.com (the fault campaign's I1). Kept, it is recorded
        when the database answers (the row already, else the webhook, a retry's
        take-over or the ``ClaimSettler``). The caller hears "we'll call you back",
        written down first (in the spool while the database is down).
        """
        details = {
            "error": error.splitlines()[0],
            "calcom_booking_uid": booking.uid,
            "outcome_unknown": True,
        }
        await self._failures.booking_failed(
            attempt.retell_call_id,
            call_id=attempt.call_id,
            reason=BookingResult.LOCAL_WRITE_FAILED.value,
            details=details,
        )
        return BookingOutcome(
            BookingResult.LOCAL_WRITE_FAILED,
            call_id=attempt.call_id,
            calcom_booking_uid=booking.uid,
            details=details,
        )

    async def _write_failed(
        self, booking: CalcomBooking, attempt: Attempt, *, error: str
    ) -> BookingOutcome:
        """Step 6: Cal.com booked, and the key's row was read holding no booking: close the
        claim, then cancel the booking and file the call.

        The claim is closed first (cancelled while it is still one): the key is spent, it
        has had its one Cal.com create, and nothing fills the claim afterwards, the Cal.com
        webhook of this booking included, so no retry is told "booked" from it once the
        booking is cancelled. A claim that is no claim any more was filled meanwhile (the
        webhook came first, or a take-over recorded the booking): if it holds this
        booking, the booking is validated and kept. A claim that cannot be closed stays
        open, booking-less, and the booking is cancelled all the same: a later request for
        the key finds the cancelled booking by the key once the claim is stale.
        """
        call_id, retell_call_id = attempt.call_id, attempt.retell_call_id
        details = {"error": error.splitlines()[0], "calcom_booking_uid": booking.uid}
        try:
            filled = not await self._store.close_claim(attempt.claim.appointment_id, self._clock())
        except SQLAlchemyError:
            log.error("could not close the claim of call %s", call_id, exc_info=True)
            filled = False
        if filled:
            try:
                written = await self._written_anyway(booking, attempt)
            except SQLAlchemyError:
                return await self._write_unknown(booking, attempt, error=error)
            if written is not None:
                return await self._stored(booking, attempt, written.appointment_id)
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
        attempt: Attempt,
        *,
        appointment_id: int,
        result: ValidationResult,
    ) -> BookingOutcome:
        """Steps 4 and 5: a validated booking is booked; otherwise roll back and compensate.

        A read-back that could not run at all (``UNREAD``: the database went after the
        write committed) found nothing wrong: the booking is kept, stored as it is, and
        the caller told "we'll call you back", written down first. Rolled back and
        cancelled, a retry would be told "booked" from the row the write committed while
        the database could not take the rollback (see ``_write_unknown``).
        """
        call_id, retell_call_id = attempt.call_id, attempt.retell_call_id
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
        failed = BookingOutcome(
            BookingResult.VALIDATION_FAILED,
            call_id=call_id,
            appointment_id=appointment_id,
            calcom_booking_uid=booking.uid,
            details={"reason": reason, **result.details},
        )
        if reason == UNREAD:
            await self._failures.booking_failed(
                retell_call_id,
                call_id=call_id,
                reason=reason,
                details={**failed.details, "calcom_booking_uid": booking.uid},
            )
            return failed
        await self._roll_back(attempt, reason=reason, details=result.details)
        if await self._compensation.cancel(booking, call_id=call_id, retell_call_id=retell_call_id):
            await self._store.cancel_appointment(appointment_id, self._clock())
        return failed

    async def _roll_back(self, attempt: Attempt, *, reason: str, details: dict[str, Any]) -> None:
        """Step 5, counted; a rollback that fails is logged, and the call's failure written
        down as a booking that failed (the spool's record while the database is down)."""
        call_id = attempt.call_id
        try:
            await self._store.roll_back(call_id, reason=reason, details=details, now=self._clock())
        except RollbackFailedError:
            log.critical("rollback of call %s failed", call_id, exc_info=True)
            await self._failures.booking_failed(
                attempt.retell_call_id, call_id=call_id, reason=reason, details=details
            )
            outcome = "failed"
        else:
            outcome = "done"
        if self._metrics is not None:
            self._metrics.rollbacks.labels(outcome=outcome).inc()
