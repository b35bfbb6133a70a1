"""The booking path's Cal.com calls, each under the event type's circuit and the retry.

A create that fails with an unknown outcome (a timeout, a lost response, a 5xx) may
have booked: before the next create, and once more after the retries ran out, the
booking is looked up by the idempotency key we put in its metadata, so a lost
response never books twice. A cancel whose answer was lost, retried, is refused as
already cancelled: a look-up tells that apart from a failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bookingguard.booking.ports import Breaker, CalcomBookings, Retrier
from bookingguard.booking.types import IDEMPOTENCY_METADATA_KEY, circuit_key_for
from bookingguard.calcom import (
    CalcomBooking,
    CalcomConnectionError,
    CalcomError,
    CalcomProtocolError,
    CalcomRateLimitedError,
    CalcomServerError,
    CalcomSlotUnavailableError,
    CalcomTimeoutError,
    NewBooking,
    Slot,
)
from bookingguard.resilience import CircuitOpenError

__all__ = ["CreateFailure", "GuardedCalcom", "is_transient"]

log = logging.getLogger(__name__)

#: How far after the slot's start the look-up by idempotency key searches for its end.
_LOOKUP_SPAN = timedelta(days=1)
_CANCEL_REASON = "Booking could not be recorded; cancelled automatically"
#: Starts closer than this are the same start.
_SAME_START = timedelta(seconds=1)


def is_transient(exc: BaseException) -> bool:
    """Worth another try: timeouts, connection errors, 5xx, 429, garbled answers."""
    return isinstance(
        exc,
        CalcomServerError
        | CalcomRateLimitedError
        | CalcomTimeoutError
        | CalcomConnectionError
        | CalcomProtocolError
        | TimeoutError
        | OSError,
    )


def _outcome_unknown(exc: BaseException) -> bool:
    """Whether the failed create may have booked anyway."""
    if isinstance(exc, CalcomError):
        return exc.outcome_unknown
    return isinstance(exc, TimeoutError)


def _retry_after(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, CalcomRateLimitedError) else None


@dataclass(frozen=True)
class CreateFailure:
    """A create that booked nothing we could find: the last error, and how it went."""

    error: Exception
    attempts: int
    outcome_unknown: bool

    @property
    def details(self) -> dict[str, Any]:
        """What the call's review item says about the failure."""
        return {
            "error": str(self.error),
            "error_code": getattr(self.error, "code", type(self.error).__name__),
            "attempts": self.attempts,
            "outcome_unknown": self.outcome_unknown,
        }

    @property
    def retry_after(self) -> float | None:
        """How long the caller should wait before asking again, when Cal.com or the breaker says."""
        value = getattr(self.error, "retry_after", None)
        return float(value) if isinstance(value, float | int) else None


class GuardedCalcom:
    """Creates, finds and cancels Cal.com bookings under the breaker and the retry."""

    def __init__(self, *, calcom: CalcomBookings, breaker: Breaker, retrier: Retrier) -> None:
        self._calcom = calcom
        self._breaker = breaker
        self._retrier = retrier

    async def create(self, new: NewBooking, key: str) -> CalcomBooking | CreateFailure:
        """Book ``new`` once (``key`` in its metadata), or say why not."""
        circuit = circuit_key_for(new.event_type_id)
        attempts = 0
        unknown = False

        # Coroutine functions, not lambdas: the breaker awaits them on the event loop,
        # where a plain callable would first be run in a worker thread.
        async def create() -> CalcomBooking:
            return await self._calcom.create_booking(new)

        async def attempt() -> CalcomBooking:
            nonlocal attempts, unknown
            if unknown:
                found = await self.find(new, key)
                if found is not None:
                    return found
            attempts += 1
            try:
                return await self._breaker.call(circuit, create)
            except BaseException as exc:
                unknown = unknown or _outcome_unknown(exc)
                raise

        try:
            return await self._retrier(attempt, is_retryable=is_transient, retry_after=_retry_after)
        except CalcomSlotUnavailableError as exc:
            return CreateFailure(exc, attempts, unknown)
        except Exception as exc:
            if unknown and not isinstance(exc, CircuitOpenError):
                found = await self._last_look(new, key)
                if found is not None:
                    return found
            return CreateFailure(exc, attempts, unknown)

    async def find(
        self, new: NewBooking, key: str, *, include_cancelled: bool = False
    ) -> CalcomBooking | None:
        """The live Cal.com booking carrying our idempotency key, if the lost create made one
        (or, ``include_cancelled``, the booking it made, live or not: a key has one create).

        Look-ups bypass the booking circuit: their successes must not reset the count
        of failed creates (three 500s in a row still open it), and they are bounded by
        the retry's attempts and the client's timeouts.
        """
        return await self.find_key(
            key,
            start=new.start,
            event_type_id=new.event_type_id,
            include_cancelled=include_cancelled,
        )

    async def find_key(
        self, key: str, *, start: datetime, event_type_id: int, include_cancelled: bool = False
    ) -> CalcomBooking | None:
        """``find`` by what a claim holds: the key, the slot's start and the event type."""
        async for booking in self._calcom.iter_bookings(
            after_start=start - timedelta(minutes=1),
            before_end=start + _LOOKUP_SPAN,
            event_type_id=event_type_id,
        ):
            if booking.metadata.get(IDEMPOTENCY_METADATA_KEY) == key and (
                include_cancelled or not booking.is_cancelled
            ):
                return booking
        return None

    async def cancel(self, booking: CalcomBooking) -> None:
        """Cancel ``booking`` (retried); raises if it is still live on Cal.com."""
        await self.cancel_uid(booking.uid, event_type_id=booking.event_type_id)

    async def cancel_uid(
        self, uid: str, *, event_type_id: int | None, reason: str = _CANCEL_REASON
    ) -> CalcomBooking | None:
        """Cancel the booking ``uid`` (retried); raises if it is still live on Cal.com.

        Returns the booking as Cal.com holds it (None when a lost answer left only the
        knowledge that it is cancelled): one cancelled by a reschedule names, in
        ``rescheduled_to_uid``, the booking that replaced it.
        """
        circuit = circuit_key_for(event_type_id or 0)

        async def cancel_on_calcom() -> CalcomBooking:
            return await self._calcom.cancel_booking(uid, reason=reason)

        async def cancel() -> CalcomBooking:
            return await self._breaker.call(circuit, cancel_on_calcom)

        try:
            return await self._retrier(cancel, is_retryable=is_transient, retry_after=_retry_after)
        except Exception:
            current = await self._current(uid)
            if current is None or not current.is_cancelled:
                raise
            return current

    async def reschedule(
        self, uid: str, *, event_type_id: int | None, start: datetime, reason: str | None
    ) -> CalcomBooking:
        """Move the booking ``uid`` to ``start`` under its event type's circuit.

        Not retried: a lost answer may have moved it, and a second reschedule of a
        booking Cal.com already cancelled for the move is refused.
        """

        async def reschedule() -> CalcomBooking:
            return await self._calcom.reschedule_booking(uid, start=start, reason=reason)

        return await self._breaker.call(circuit_key_for(event_type_id or 0), reschedule)

    async def slots(
        self, event_type_id: int, *, start: datetime, end: datetime, time_zone: str
    ) -> list[Slot]:
        """The event type's free slots between ``start`` and ``end`` (a read: retried)."""

        async def read() -> list[Slot]:
            return await self._calcom.get_slots(
                event_type_id, start=start, end=end, time_zone=time_zone
            )

        async def guarded() -> list[Slot]:
            return await self._breaker.read(circuit_key_for(event_type_id), read)

        return await self._retrier(guarded, is_retryable=is_transient, retry_after=_retry_after)

    async def _last_look(self, new: NewBooking, key: str) -> CalcomBooking | None:
        """After the retries ran out with an unknown outcome: did one of them book after all?"""
        try:
            return await self.find(new, key)
        except Exception:
            log.warning("look-up of booking %s after failed creates failed", key, exc_info=True)
            return None

    async def rescheduled_to(self, uid: str, start: datetime) -> CalcomBooking | None:
        """The booking at ``start`` that Cal.com moved ``uid`` to, when a reschedule whose
        answer was lost (or whose retry Cal.com refused) made one; None if it did not."""
        current = await self._current(uid)
        if current is None or current.rescheduled_to_uid is None:
            return None
        moved = await self._current(current.rescheduled_to_uid)
        if moved is None or abs(moved.start - start) > _SAME_START:
            return None
        return moved

    async def _current(self, uid: str) -> CalcomBooking | None:
        """The booking ``uid`` as Cal.com holds it now; None when that cannot be read."""
        try:
            return await self._calcom.get_booking(uid)
        except Exception:
            log.warning("look-up of booking %s failed", uid, exc_info=True)
            return None
