"""What reconciliation needs of Cal.com, and the adapter over a Cal.com client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

__all__ = [
    "BookingLister",
    "BookingPageLike",
    "BookingSource",
    "ClientBookingSource",
    "RemoteBooking",
]


class RemoteBooking(Protocol):
    """What reconciliation reads of a Cal.com booking."""

    @property
    def id(self) -> int: ...

    @property
    def uid(self) -> str: ...

    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime: ...

    @property
    def status(self) -> str: ...

    @property
    def created_at(self) -> datetime | None: ...

    @property
    def metadata(self) -> Mapping[str, str]: ...


class BookingSource(Protocol):
    """Cal.com's bookings, as reconciliation needs them: a window page by page, one by uid."""

    async def list_page(
        self, *, after_start: datetime, before_end: datetime, take: int, skip: int
    ) -> tuple[Sequence[RemoteBooking], bool]:
        """One page of bookings starting in the window, and whether another page follows."""
        ...

    async def find_booking(self, uid: str) -> RemoteBooking | None:
        """The booking with ``uid``, or None if Cal.com has none."""
        ...


class BookingPageLike(Protocol):
    @property
    def bookings(self) -> Sequence[RemoteBooking]: ...

    @property
    def has_next_page(self) -> bool: ...


class BookingLister(Protocol):
    """The part of a Cal.com client an adapter needs (``bookingguard.calcom.CalcomClient``)."""

    async def list_bookings(
        self,
        *,
        after_start: datetime | None = None,
        before_end: datetime | None = None,
        take: int = 100,
        skip: int = 0,
    ) -> BookingPageLike: ...

    async def get_booking(self, uid: str) -> RemoteBooking: ...


class ClientBookingSource:
    """``BookingSource`` over a Cal.com client; ``not_found`` is its "no such booking" error."""

    def __init__(self, client: BookingLister, *, not_found: type[Exception]) -> None:
        self._client = client
        self._not_found = not_found

    async def list_page(
        self, *, after_start: datetime, before_end: datetime, take: int, skip: int
    ) -> tuple[Sequence[RemoteBooking], bool]:
        page = await self._client.list_bookings(
            after_start=after_start, before_end=before_end, take=take, skip=skip
        )
        return page.bookings, page.has_next_page

    async def find_booking(self, uid: str) -> RemoteBooking | None:
        try:
            return await self._client.get_booking(uid)
        except self._not_found:
            return None
