"""Waiting for a key another request has claimed: it alone asks Cal.com, the others wait.

The booking path claims its idempotency key (the appointment row in ``pending_creation``)
before it asks Cal.com. A request that finds the key claimed by another, in this process
or any other, reads the row again with a short, growing pause (``tenacity``, as the
retry does) until the claim is settled (the booking recorded, or the claim released),
or for ``wait_seconds`` at most: the agent must get an answer while the caller listens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, wait_exponential

from bookingguard.booking.store import BookingStore, StoredAppointment
from bookingguard.booking.types import BookingOutcome, BookingResult
from bookingguard.settings import ValidationSettings

__all__ = ["ClaimWaiter", "stored_outcome"]

#: How a request whose key's appointment is already stored ends, by the appointment's status.
_STORED_RESULTS = {
    "cancelled": BookingResult.PREVIOUSLY_FAILED,
    "rejected": BookingResult.PREVIOUSLY_FAILED,
    "pending": BookingResult.PENDING,
}

#: The first pause between two reads of a claimed key, doubled after each, up to the last.
FIRST_PAUSE_SECONDS = 0.02
LAST_PAUSE_SECONDS = 0.25


def _still_claimed(stored: StoredAppointment | None) -> bool:
    return stored is not None and stored.claimed


class ClaimWaiter:
    """Reads a claimed key's row until its claim is settled, for a bounded time."""

    def __init__(
        self,
        store: BookingStore,
        *,
        wait_seconds: float = ValidationSettings().claim_wait_seconds,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._wait_seconds = wait_seconds
        self._sleep = sleep
        self._monotonic = monotonic

    async def wait(self, retell_call_id: str, key: str) -> StoredAppointment | None:
        """The key's row once it is no longer a claim; still the claim when the wait ran
        out; None when the claim was released (Cal.com booked nothing: the key is free)."""
        started = self._monotonic()

        def waited_enough(state: RetryCallState) -> bool:
            return self._monotonic() - started >= self._wait_seconds

        def last_read(state: RetryCallState) -> StoredAppointment | None:
            assert state.outcome is not None
            result: StoredAppointment | None = state.outcome.result()
            return result

        async def read() -> StoredAppointment | None:
            _, stored = await self._store.look_up(retell_call_id, key)
            return stored

        retrying = AsyncRetrying(
            retry=retry_if_result(_still_claimed),
            wait=wait_exponential(multiplier=FIRST_PAUSE_SECONDS, max=LAST_PAUSE_SECONDS),
            stop=waited_enough,
            sleep=self._sleep,
            retry_error_callback=last_read,
        )
        stored: StoredAppointment | None = await retrying(read)
        return stored


def stored_outcome(stored: StoredAppointment, *, call_id: int) -> BookingOutcome:
    """The answer from an appointment another request stored for the key."""
    return BookingOutcome(
        _STORED_RESULTS.get(stored.status, BookingResult.ALREADY_BOOKED),
        call_id=call_id,
        appointment_id=stored.appointment_id,
        start=stored.start,
        calcom_booking_uid=stored.calcom_booking_uid,
    )
