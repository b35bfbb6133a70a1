"""An in-memory Cal.com for reconciliation: a ``BookingSource`` over a dict of bookings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bookingguard.monitoring.reconcile import RemoteBooking

__all__ = ["InMemoryBookingSource"]


@dataclass(frozen=True)
class _MemoryBooking:
    id: int
    uid: str
    start: datetime
    end: datetime
    status: str
    created_at: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class InMemoryBookingSource:
    """A ``BookingSource`` over a list, counting requests (for unit tests and demos)."""

    def __init__(self) -> None:
        self.bookings: dict[str, _MemoryBooking] = {}
        self.requests = 0

    def add(
        self,
        *,
        id: int,
        uid: str,
        start: datetime,
        status: str = "accepted",
        created_at: datetime | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.bookings[uid] = _MemoryBooking(
            id, uid, start, start + timedelta(minutes=30), status, created_at, dict(metadata or {})
        )

    async def list_page(
        self, *, after_start: datetime, before_end: datetime, take: int, skip: int
    ) -> tuple[Sequence[RemoteBooking], bool]:
        self.requests += 1
        matching = sorted(
            (b for b in self.bookings.values() if after_start <= b.start < before_end),
            key=lambda b: (b.start, b.id),
        )
        page = matching[skip : skip + take]
        return page, skip + take < len(matching)

    async def find_booking(self, uid: str) -> RemoteBooking | None:
        self.requests += 1
        return self.bookings.get(uid)
