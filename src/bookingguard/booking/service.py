"""``BookingService.book``: the booking path, steps 1 to 6.

1. Idempotency: the request's key (Retell call id + event type + slot, or given) is
   claimed in the database before Cal.com is asked (the appointment row, unique per
   key, in ``pending_creation``): one request per key, in any process or replica,
   asks Cal.com. Any other waits for its outcome (bounded) and answers from it; a key
   whose booking is stored returns it; nothing more is sent to Cal.com. A refusal
   (Cal.com booked nothing) releases the claim, so a later attempt may try again; an
   unknown outcome keeps it. A claim left by a crashed owner is resolved, once stale,
   by looking the booking up at Cal.com by the key, never by a blind second create.
2. The Cal.com create runs under the circuit ``appointment_booking:event_type:{id}``,
   retried on transient failures, never booking twice (``GuardedCalcom``).
3. The claim becomes the appointment and the call's flags are written, in one
   transaction.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bookingguard.booking.changes import AppointmentChanges
from bookingguard.booking.claims import ClaimWaiter, stored_outcome
from bookingguard.booking.compensation import Compensation
from bookingguard.booking.errors import RollbackFailedError
from bookingguard.booking.failures import FailureRecorder
from bookingguard.booking.guarded_calcom import CreateFailure, GuardedCalcom, is_transient
from bookingguard.booking.metrics import BookingMetrics
from bookingguard.booking.ports import Breaker, CalcomBookings, FailureSpool, Retrier
from bookingguard.booking.store import (
    AppointmentReadBack,
    BookingStore,
    NewAppointment,
    NewClaim,
    ReadBack,
    StaleClaim,
    StoredAppointment,
)
from bookingguard.booking.types import (
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
)
from bookingguard.resilience import CircuitOpenError
from bookingguard.resilience.retry import RetryPolicy, retry_async
from bookingguard.settings import ValidationSettings

__all__ = ["BookingService"]

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
class _Attempt:
    """The request that holds its key's claim: whose call, which key, which claim row."""

    retell_call_id: str
    call_id: int
    key: str
    claim: StoredAppointment


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
        claims: ClaimWaiter | None = None,
        claim_stale_seconds: float = ValidationSettings().claim_stale_seconds,
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
        self._claims = claims if claims is not None else ClaimWaiter(store)
        self._claim_stale = timedelta(seconds=claim_stale_seconds)
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
            outcome = await self._book(request)
            if outcome.result is BookingResult.PREVIOUSLY_FAILED:
                await self._previously_failed(request, outcome)
        except Exception as exc:
            log.exception("booking for call %r failed unexpectedly", request.retell_call_id)
            outcome = await self._unexpected(request, exc)
        if self._metrics is not None:
            self._metrics.bookings.labels(result=outcome.result.value).inc()
        return outcome

    async def _previously_failed(self, request: BookingRequest, outcome: BookingOutcome) -> None:
        """The key's booking failed before (cancelled or rejected), and this caller hears
        "we'll call you back" too: the request that failed may have died before it wrote
        its record, so this one writes it (nothing when the call carries a failure)."""
        await self._failures.booking_failed(
            request.retell_call_id,
            call_id=outcome.call_id,
            reason=BookingResult.PREVIOUSLY_FAILED.value,
            details={"calcom_booking_uid": outcome.calcom_booking_uid, "key": request.key},
        )

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
        claim = NewClaim(
            retell_call_id=request.retell_call_id,
            key=request.key,
            event_type_id=request.event_type_id,
            starts_at=request.start,
            now=self._clock(),
        )
        # Twice at most: a claim released while this request waited frees the key once more.
        for _ in range(2):
            claimed = await self._store.claim(claim)
            if claimed.won:
                attempt = _Attempt(
                    request.retell_call_id, claimed.call_id, request.key, claimed.appointment
                )
                return await self._create(request, attempt)
            stored: StoredAppointment | None = claimed.appointment
            if claimed.appointment.claimed:
                stored = await self._claims.wait(request.retell_call_id, request.key)
            if stored is not None:
                return await self._answer_from(request, stored, call_id=claimed.call_id)
        return BookingOutcome(BookingResult.CONFIRMING, call_id=claimed.call_id)

    async def _answer_from(
        self, request: BookingRequest, stored: StoredAppointment, *, call_id: int
    ) -> BookingOutcome:
        """Another request holds (or held) the key: its outcome is this request's."""
        if not stored.claimed:
            return stored_outcome(stored, call_id=call_id)
        seen = stored.updated_at
        if seen is None or self._clock() - seen < self._claim_stale:
            # Its owner is still asking Cal.com: the agent says so, and asks again.
            return BookingOutcome(BookingResult.CONFIRMING, call_id=call_id)
        if not await self._store.take_over_claim(
            stored.appointment_id, seen=seen, now=self._clock()
        ):
            return BookingOutcome(BookingResult.CONFIRMING, call_id=call_id)
        log.warning("claim of key %s is stale: its owner is gone, taking it over", request.key)
        attempt = _Attempt(request.retell_call_id, call_id, request.key, stored)
        return await self._create(request, attempt, look_first=True)

    async def settle(self, stale: StaleClaim) -> BookingResult | None:
        """Settle a claim whose request is gone, as a take-over does but never booking
        (``ClaimSettler`` runs it in the background): what Cal.com holds for the key
        decides. A live booking is recorded in the claim and validated like any; a
        cancelled one cancels the claim; none releases it. Either of the last two
        writes the call down as a failed booking, for a human to call back. None when
        the claim changed since it was read (settled, or taken over elsewhere)."""
        claim = stale.claim
        seen = claim.updated_at
        if seen is None or not await self._store.take_over_claim(
            claim.appointment_id, seen=seen, now=self._clock()
        ):
            return None
        found = await self._calcom.find_key(
            stale.key,
            start=stale.starts_at,
            event_type_id=stale.event_type_id,
            include_cancelled=True,
        )
        if found is not None and not found.is_cancelled:
            attempt = _Attempt(stale.retell_call_id, stale.call_id, stale.key, claim)
            return (await self._record(found, attempt)).result
        if found is None:
            await self._store.release_claim(claim.appointment_id)
            result = BookingResult.CLAIM_ABANDONED
        else:
            await self._store.cancel_appointment(claim.appointment_id, self._clock())
            result = BookingResult.PREVIOUSLY_FAILED
        await self._failures.booking_failed(
            stale.retell_call_id,
            call_id=stale.call_id,
            reason=result.value,
            details={"key": stale.key, "calcom_booking_uid": found.uid if found else None},
        )
        return result

    async def _create(
        self, request: BookingRequest, attempt: _Attempt, *, look_first: bool = False
    ) -> BookingOutcome:
        """Steps 2 onwards, by the request holding the key's claim.

        ``look_first`` for a claim taken over from a crashed owner: its create may have
        booked (and even been cancelled since), so Cal.com is asked by the key first.
        """
        new = request.new_booking()
        if look_first:
            found = await self._calcom.find(new, attempt.key, include_cancelled=True)
            if found is not None and found.is_cancelled:
                await self._store.cancel_appointment(attempt.claim.appointment_id, self._clock())
                return BookingOutcome(
                    BookingResult.PREVIOUSLY_FAILED,
                    call_id=attempt.call_id,
                    appointment_id=attempt.claim.appointment_id,
                    calcom_booking_uid=found.uid,
                )
            if found is not None:
                return await self._record(found, attempt)
        created = await self._calcom.create(new, attempt.key)
        if isinstance(created, CreateFailure):
            return await self._refused(created, attempt)
        return await self._record(created, attempt)

    async def _refused(self, failure: CreateFailure, attempt: _Attempt) -> BookingOutcome:
        """Cal.com booked nothing: say why, and file the call for review (unless the slot
        was simply taken). The claim is released when Cal.com surely created nothing,
        and kept when it may have (a later request resolves it by the key)."""
        exc = failure.error
        if not failure.outcome_unknown and (
            isinstance(exc, CalcomError | CircuitOpenError) or is_transient(exc)
        ):
            await self._store.release_claim(attempt.claim.appointment_id)
        call_id = attempt.call_id
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
            attempt.retell_call_id, call_id=call_id, reason=result.value, details=details
        )
        return BookingOutcome(
            result, call_id=call_id, retry_after=failure.retry_after, details=details
        )

    # -- steps 3 to 6: record, validate, roll back, compensate ---------------------

    async def _record(self, booking: CalcomBooking, attempt: _Attempt) -> BookingOutcome:
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
            appointment_id = written.appointment_id

            async def fresh() -> AppointmentReadBack | None:
                return await self._store.read_back(call_id, appointment_id)

            result = await self._validate(fresh, call_id=call_id, appointment_id=appointment_id)
        return await self._conclude(booking, attempt, appointment_id=appointment_id, result=result)

    async def _written_anyway(
        self, booking: CalcomBooking, attempt: _Attempt
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

    async def _resolve_conflict(self, booking: CalcomBooking, attempt: _Attempt) -> BookingOutcome:
        """The claim was filled first (the Cal.com webhook of this booking), or this Cal.com
        booking is stored elsewhere."""
        call_id = attempt.call_id
        stored = await self._store.claim_stored(attempt.key, booking.uid)
        if stored is None or stored.claimed:
            return await self._write_failed(booking, attempt, error="conflicting write")
        if stored.calcom_booking_uid == booking.uid:
            appointment_id = stored.appointment_id

            async def read() -> AppointmentReadBack | None:
                return await self._store.read_back(call_id, appointment_id)

            result = await self._validate(read, call_id=call_id, appointment_id=appointment_id)
            return await self._conclude(
                booking, attempt, appointment_id=appointment_id, result=result
            )
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
        self, booking: CalcomBooking, attempt: _Attempt, *, error: str
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
        self, booking: CalcomBooking, attempt: _Attempt, *, error: str
    ) -> BookingOutcome:
        """Step 6: Cal.com booked, we could not record it: cancel it and file the call.

        The key stays spent (its claim cancelled): it has had its one Cal.com create.
        If even that cannot be written, the claim stays open, and a later request for the
        key finds the cancelled booking by the key once the claim is stale.
        """
        call_id, retell_call_id = attempt.call_id, attempt.retell_call_id
        details = {"error": error.splitlines()[0], "calcom_booking_uid": booking.uid}
        if await self._compensation.cancel(booking, call_id=call_id, retell_call_id=retell_call_id):
            try:
                await self._store.cancel_appointment(attempt.claim.appointment_id, self._clock())
            except SQLAlchemyError:
                log.error("could not close the claim of call %s", call_id, exc_info=True)
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
        attempt: _Attempt,
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

    async def _roll_back(self, attempt: _Attempt, *, reason: str, details: dict[str, Any]) -> None:
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
