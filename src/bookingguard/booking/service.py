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
from collections.abc import Callable
from datetime import datetime, timedelta

from bookingguard.booking.changes import AppointmentChanges
from bookingguard.booking.claims import ClaimWaiter, stored_outcome
from bookingguard.booking.compensation import Compensation
from bookingguard.booking.failures import FailureRecorder
from bookingguard.booking.guarded_calcom import CreateFailure, GuardedCalcom, is_transient
from bookingguard.booking.metrics import BookingMetrics
from bookingguard.booking.ports import Breaker, CalcomBookings, FailureSpool, Retrier
from bookingguard.booking.recording import Attempt, BookingRecorder
from bookingguard.booking.store import (
    BookingStore,
    NewClaim,
    StaleClaim,
    StoredAppointment,
)
from bookingguard.booking.types import (
    BookingOutcome,
    BookingRequest,
    BookingResult,
)
from bookingguard.booking.validation import PostBookingValidator
from bookingguard.calcom import (
    CalcomError,
    CalcomMissingFields,
    CalcomSlotUnavailableError,
)
from bookingguard.resilience import CircuitOpenError
from bookingguard.settings import ValidationSettings

__all__ = ["BookingService"]

log = logging.getLogger(__name__)


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
        self._recorder = BookingRecorder(
            store=store,
            compensation=self._compensation,
            failures=self._failures,
            validator=validator,
            clock=clock,
            metrics=metrics,
        )
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
                attempt = Attempt(
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
        attempt = Attempt(request.retell_call_id, call_id, request.key, stored)
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
            attempt = Attempt(stale.retell_call_id, stale.call_id, stale.key, claim)
            return (await self._recorder.record(found, attempt)).result
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
        self, request: BookingRequest, attempt: Attempt, *, look_first: bool = False
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
                return await self._recorder.record(found, attempt)
        created = await self._calcom.create(new, attempt.key)
        if isinstance(created, CreateFailure):
            return await self._refused(created, attempt)
        return await self._recorder.record(created, attempt)

    async def _refused(self, failure: CreateFailure, attempt: Attempt) -> BookingOutcome:
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
