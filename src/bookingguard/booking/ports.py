"""What the booking path needs from the outside, as small protocols.

``Breaker`` is satisfied by ``bookingguard.resilience.CircuitBreaker``; ``Retrier``
by ``bookingguard.resilience.retry.retry_async`` bound to a policy (bootstrap does
the binding). ``CalcomBookings`` is the slice of ``CalcomClient`` the service uses.
``FailureSpool`` is satisfied by ``bookingguard.db.spool.Spool``, the local file that
keeps failure records the database could not take.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from typing import Protocol, TypeVar

from bookingguard.calcom import CalcomBooking, NewBooking, Slot
from bookingguard.db.spool import FailureRecord

__all__ = ["Breaker", "CalcomBookings", "FailureSpool", "Retrier"]

T = TypeVar("T")


class Breaker(Protocol):
    """A circuit breaker: runs ``fn`` under the circuit ``circuit_key`` or refuses fast."""

    async def call(self, circuit_key: str, fn: Callable[[], Awaitable[T]], /) -> T: ...

    async def read(self, circuit_key: str, fn: Callable[[], Awaitable[T]], /) -> T:
        """``call`` for ``fn`` without side effects, which may start before its admission."""
        ...


class Retrier(Protocol):
    """Runs ``fn`` again after transient failures, waiting ``retry_after`` when given."""

    async def __call__(
        self,
        fn: Callable[[], Awaitable[T]],
        /,
        *,
        is_retryable: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None],
    ) -> T: ...


class CalcomBookings(Protocol):
    """The Cal.com operations the booking path uses."""

    async def create_booking(self, booking: NewBooking) -> CalcomBooking: ...

    async def cancel_booking(self, uid: str, *, reason: str) -> CalcomBooking: ...

    async def get_booking(self, uid: str) -> CalcomBooking: ...

    async def reschedule_booking(
        self, uid: str, *, start: datetime, reason: str | None = None
    ) -> CalcomBooking: ...

    async def get_slots(
        self, event_type_id: int, *, start: datetime | date, end: datetime | date, time_zone: str
    ) -> list[Slot]: ...

    def iter_bookings(
        self,
        *,
        after_start: datetime | None = None,
        before_end: datetime | None = None,
        after_created_at: datetime | None = None,
        status: str | None = None,
        event_type_id: int | None = None,
        take: int = 100,
    ) -> AsyncIterator[CalcomBooking]: ...


class FailureSpool(Protocol):
    """Durable local storage of failure records until the database takes them. Blocking."""

    def append(self, record: FailureRecord) -> None:
        """Keep ``record`` durably before returning; raise if it cannot."""
        ...

    def pending(self, limit: int = 100) -> list[FailureRecord]:
        """Records to replay, those tried least often first."""
        ...

    def remove(self, record_id: str) -> None:
        """Forget a record the database now holds."""
        ...

    def note_failure(self, record_id: str, error: str) -> None:
        """Count a failed replay of a record."""
        ...

    def backlog(self) -> int:
        """How many records wait."""
        ...
