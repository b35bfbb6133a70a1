"""``BookingStore``: the database work the booking service depends on, as one protocol.

``SqlBookingStore`` (``bookingguard.booking.sql_store``) implements it over an
engine's sessions; ``bookingguard.testing.booking.MemoryBookingStore`` in memory. One
contract suite (``tests/integration/booking/test_store_contract.py``) runs over both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar

from bookingguard.db.booking_queries import (
    AppointmentReadBack,
    CallAppointment,
    Claimed,
    NewAppointment,
    NewClaim,
    ReadBack,
    StaleClaim,
    StoredAppointment,
)
from bookingguard.db.spool import FailureRecord

__all__ = [
    "AppointmentReadBack",
    "BookingStore",
    "CallAppointment",
    "Claimed",
    "FailureRecord",
    "NewAppointment",
    "NewClaim",
    "ReadBack",
    "StaleClaim",
    "StoredAppointment",
]

T = TypeVar("T")


class BookingStore(Protocol):
    """Where bookings and their calls are stored, and failed bookings are written down."""

    async def look_up(self, retell_call_id: str, key: str) -> tuple[int, StoredAppointment | None]:
        """The call's id (created if no webhook has yet) and any appointment stored for ``key``."""
        ...

    async def claim(self, claim: NewClaim) -> Claimed:
        """The call (created if no webhook has yet) and the row for the key: a new claim
        (``pending_creation``, ``won``) when there was none, in one committed transaction.

        Exactly one of any number of concurrent claims of a key, in any process, wins.
        """
        ...

    async def write_and_link(
        self, appointment: NewAppointment, check: Callable[[int, ReadBack], Awaitable[T]]
    ) -> tuple[int, T]:
        """Fill the key's claim with ``appointment`` and link its call, committed; then
        ``check(appointment_id, read)``.

        Raises ``IntegrityError`` when the claim is no longer open (a webhook filled it
        first, or it is gone) or the Cal.com booking is already stored, another
        ``SQLAlchemyError`` when the write fails.
        """
        ...

    async def release_claim(self, appointment_id: int) -> None:
        """Delete the claim if it still is one: Cal.com created nothing, the key is free."""
        ...

    async def close_claim(self, appointment_id: int, now: datetime) -> bool:
        """Cancel the claim if it still is one: its key is spent, and nothing fills it
        afterwards. False when it is no claim any more (filled, released, or cancelled)."""
        ...

    async def take_over_claim(self, appointment_id: int, *, seen: datetime, now: datetime) -> bool:
        """Make a stale claim (last changed at ``seen``) this request's, as of ``now``;
        False when it changed since (filled, released, or taken over by another)."""
        ...

    async def stale_claims(
        self, *, before: datetime, created_since: datetime, limit: int
    ) -> list[StaleClaim]:
        """Claims last changed at ``before`` or earlier (taken at ``created_since`` or
        later), oldest first, at most ``limit``."""
        ...

    async def read_back(
        self, call_id: int, appointment_id: int | None
    ) -> AppointmentReadBack | None:
        """The appointment (else the call's latest) with the call's flags, or None."""
        ...

    async def claim_stored(self, key: str, uid: str) -> StoredAppointment | None:
        """The appointment stored for ``key`` or Cal.com booking ``uid``, claimed for ``key``."""
        ...

    async def cancel_appointment(self, appointment_id: int, now: datetime) -> None:
        """Mark the appointment cancelled (its call is unlinked)."""
        ...

    async def latest_appointment(self, retell_call_id: str) -> CallAppointment | None:
        """The call's latest appointment, whatever its status (a claim is none yet); None
        without one (or the call)."""
        ...

    async def reschedule_appointment(self, old_appointment_id: int, new: NewAppointment) -> int:
        """``new`` stored and its call linked, the old appointment marked ``rescheduled``,
        committed together; returns the new appointment's id.

        A new appointment the Cal.com webhook stored first (same booking uid) is taken
        over rather than inserted again.
        """
        ...

    async def roll_back(
        self, call_id: int, *, reason: str, details: Mapping[str, Any], now: datetime
    ) -> None:
        """The call's booking failed validation: flags rolled back, alert, review, notice.

        Raises ``RollbackFailedError`` when nothing could be written.
        """
        ...

    async def record_failure(self, record: FailureRecord) -> int:
        """Write a failed booking down in one transaction, once; the call's id.

        ``booking_failed``: the call flagged and filed for review; ``compensation_failed``:
        an alert, a review item and a notice. The call is ``record.call_id``, else the
        one with ``record.retell_call_id`` (created if no webhook has announced it). A
        record written before (same ``record_id``) is not written again.
        """
        ...

    async def aclose(self) -> None:
        """Release what the store opened."""
        ...
