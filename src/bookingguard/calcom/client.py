"""Cal.com v2 client (httpx, async): bookings, their event types and free slots.

Each endpoint is sent with the ``cal-api-version`` its documentation names
(bookings 2024-08-13, slots 2024-09-04, event types 2024-06-14); settings can
override each. A create is built from its event type, fetched once per TTL.

An adapter with no policy: it speaks the ``{"status": "success", "data": …}``
envelope and turns the error envelope into the typed errors of
``bookingguard.calcom.errors``. Retrying and circuit breaking are the caller's.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import TracebackType
from typing import Self

import httpx
from pydantic import ValidationError

from bookingguard.calcom.create_request import create_request
from bookingguard.calcom.errors import (
    CalcomConnectionError,
    CalcomProtocolError,
    CalcomTimeoutError,
)
from bookingguard.calcom.event_types import EventType
from bookingguard.calcom.models import BookingPage, CalcomBooking, NewBooking, Slot, format_utc
from bookingguard.calcom.responses import error_for, parse_booking, success_body
from bookingguard.settings import Settings

__all__ = ["ApiVersions", "CalcomClient"]


@dataclass(frozen=True, kw_only=True)
class ApiVersions:
    """The ``cal-api-version`` sent to each group of endpoints."""

    bookings: str = "2024-08-13"
    slots: str = "2024-09-04"
    event_types: str = "2024-06-14"


class CalcomClient:
    """Async Cal.com v2 client. Use as ``async with`` or call ``aclose()``.

    ``api_version`` is the bookings endpoints' version (kept for callers that set
    only that); ``versions`` sets all three. ``clock`` (Unix seconds) dates the
    event-type cache and rate-limit resets.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        api_version: str | None = None,
        versions: ApiVersions | None = None,
        event_type_cache_seconds: float = 300.0,
        connect_timeout: float = 3.0,
        read_timeout: float = 8.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        chosen = versions or ApiVersions()
        if api_version is not None:
            chosen = ApiVersions(
                bookings=api_version, slots=chosen.slots, event_types=chosen.event_types
            )
        self.versions = chosen
        self._clock = clock
        self._event_type_ttl = event_type_cache_seconds
        self._event_types: dict[int, tuple[float, EventType]] = {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> CalcomClient:
        """A client for the configured base URL, key, API versions, cache and timeouts."""
        calcom = settings.calcom
        key = calcom.api_key
        return cls(
            base_url=calcom.base_url,
            api_key=key.get_secret_value() if key is not None else "",
            versions=ApiVersions(
                bookings=calcom.api_version,
                slots=calcom.slots_api_version,
                event_types=calcom.event_types_api_version,
            ),
            event_type_cache_seconds=calcom.event_type_cache_seconds,
            connect_timeout=settings.calcom.connect_timeout_seconds,
            read_timeout=settings.calcom.read_timeout_seconds,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get_event_type(self, event_type_id: int) -> EventType:
        """``GET /v2/event-types/{id}``, answered from the cache while it is fresh."""
        now = self._clock()
        cached = self._event_types.get(event_type_id)
        if cached is not None and now - cached[0] < self._event_type_ttl:
            return cached[1]
        data = await self._request(
            "GET", f"event-types/{event_type_id}", version=self.versions.event_types
        )
        try:
            event_type = EventType.model_validate(data)
        except ValidationError as exc:
            raise CalcomProtocolError(f"unexpected Cal.com event type shape: {exc}") from exc
        self._event_types[event_type_id] = (now, event_type)
        return event_type

    async def create_booking(self, booking: NewBooking) -> CalcomBooking:
        """``POST /v2/bookings``, built from the event type.

        ``CalcomMissingFields`` (before any booking request) when the event type needs
        something ``booking`` does not say. A timeout or dropped connection leaves the
        outcome unknown. A booking of an event type that requires confirmation comes
        back ``pending`` (``CalcomBooking.is_pending``).
        """
        event_type = await self.get_event_type(booking.event_type_id)
        body = create_request(booking, event_type)
        data = await self._request("POST", "bookings", json=body)
        return parse_booking(data)

    async def get_booking(self, uid: str) -> CalcomBooking:
        """``GET /v2/bookings/{uid}``; ``CalcomNotFoundError`` if there is none."""
        data = await self._request("GET", f"bookings/{uid}")
        return parse_booking(data)

    async def cancel_booking(self, uid: str, *, reason: str) -> CalcomBooking:
        """``POST /v2/bookings/{uid}/cancel`` with a cancellation reason."""
        data = await self._request(
            "POST", f"bookings/{uid}/cancel", json={"cancellationReason": reason}
        )
        return parse_booking(data)

    async def reschedule_booking(
        self, uid: str, *, start: datetime, reason: str | None = None
    ) -> CalcomBooking:
        """``POST /v2/bookings/{uid}/reschedule``: the new booking (``rescheduled_from_uid``
        names the old one, which Cal.com cancels)."""
        body: dict[str, object] = {"start": format_utc(start)}
        if reason is not None:
            body["reschedulingReason"] = reason
        data = await self._request("POST", f"bookings/{uid}/reschedule", json=body)
        return parse_booking(data)

    async def confirm_booking(self, uid: str) -> CalcomBooking:
        """``POST /v2/bookings/{uid}/confirm``: a pending booking becomes accepted."""
        data = await self._request("POST", f"bookings/{uid}/confirm")
        return parse_booking(data)

    async def decline_booking(self, uid: str, *, reason: str | None = None) -> CalcomBooking:
        """``POST /v2/bookings/{uid}/decline``: a pending booking becomes rejected."""
        body: dict[str, object] = {} if reason is None else {"reason": reason}
        data = await self._request("POST", f"bookings/{uid}/decline", json=body)
        return parse_booking(data)

    async def get_slots(
        self, event_type_id: int, *, start: datetime | date, end: datetime | date, time_zone: str
    ) -> list[Slot]:
        """``GET /v2/slots``: the free slots between ``start`` and ``end``, earliest first,
        with times in ``time_zone``."""
        params: dict[str, str | int] = {
            "eventTypeId": event_type_id,
            "start": _slot_bound(start),
            "end": _slot_bound(end),
            "timeZone": time_zone,
            "format": "range",
        }
        data = await self._request("GET", "slots", params=params, version=self.versions.slots)
        if not isinstance(data, dict):
            raise CalcomProtocolError("slots answer without a date map")
        try:
            slots = [
                Slot(
                    start=datetime.fromisoformat(item["start"]),
                    end=datetime.fromisoformat(item["end"]),
                )
                for items in data.values()
                for item in items
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise CalcomProtocolError(f"unexpected Cal.com slot shape: {exc}") from exc
        return sorted(slots, key=lambda slot: slot.start)

    async def list_bookings(
        self,
        *,
        after_start: datetime | None = None,
        before_end: datetime | None = None,
        after_created_at: datetime | None = None,
        status: str | None = None,
        event_type_id: int | None = None,
        take: int = 100,
        skip: int = 0,
    ) -> BookingPage:
        """One page of ``GET /v2/bookings`` with Cal.com's filters and take/skip paging."""
        params: dict[str, str | int] = {"take": take, "skip": skip}
        if after_start is not None:
            params["afterStart"] = format_utc(after_start)
        if before_end is not None:
            params["beforeEnd"] = format_utc(before_end)
        if after_created_at is not None:
            params["afterCreatedAt"] = format_utc(after_created_at)
        if status is not None:
            params["status"] = status
        if event_type_id is not None:
            params["eventTypeId"] = event_type_id
        response = await self._send(
            "GET", "bookings", params=params, version=self.versions.bookings
        )
        body = success_body(response)
        items = body.get("data")
        if not isinstance(items, list):
            raise CalcomProtocolError(
                "bookings list without a data array", status_code=response.status_code
            )
        bookings = tuple(parse_booking(item) for item in items)
        pagination = body.get("pagination")
        total: int | None = None
        has_next = len(bookings) == take
        if isinstance(pagination, dict):
            raw_total = pagination.get("totalItems")
            total = raw_total if isinstance(raw_total, int) else None
            raw_next = pagination.get("hasNextPage")
            if isinstance(raw_next, bool):
                has_next = raw_next
        return BookingPage(bookings=bookings, total_items=total, has_next_page=has_next)

    async def iter_bookings(
        self,
        *,
        after_start: datetime | None = None,
        before_end: datetime | None = None,
        after_created_at: datetime | None = None,
        status: str | None = None,
        event_type_id: int | None = None,
        take: int = 100,
    ) -> AsyncIterator[CalcomBooking]:
        """Every booking matching the filters, page after page."""
        skip = 0
        while True:
            page = await self.list_bookings(
                after_start=after_start,
                before_end=before_end,
                after_created_at=after_created_at,
                status=status,
                event_type_id=event_type_id,
                take=take,
                skip=skip,
            )
            for booking in page.bookings:
                yield booking
            if not page.has_next_page or not page.bookings:
                return
            skip += len(page.bookings)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, object] | None = None,
        params: Mapping[str, str | int] | None = None,
        version: str | None = None,
    ) -> object:
        response = await self._send(
            method, path, json=json, params=params, version=version or self.versions.bookings
        )
        return success_body(response).get("data")

    async def _send(
        self,
        method: str,
        path: str,
        *,
        version: str,
        json: Mapping[str, object] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method, path, json=json, params=params, headers={"cal-api-version": version}
            )
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise CalcomTimeoutError(
                f"Cal.com {method} /{path}: no connection in time", outcome_unknown=False
            ) from exc
        except httpx.TimeoutException as exc:
            raise CalcomTimeoutError(
                f"Cal.com {method} /{path}: no answer in time", outcome_unknown=True
            ) from exc
        except httpx.ConnectError as exc:
            raise CalcomConnectionError(
                f"Cal.com {method} /{path}: cannot connect", outcome_unknown=False
            ) from exc
        except httpx.TransportError as exc:
            raise CalcomConnectionError(
                f"Cal.com {method} /{path}: connection lost", outcome_unknown=True
            ) from exc
        if response.status_code >= 400:
            raise error_for(response, now=self._clock())
        return response


def _slot_bound(moment: datetime | date) -> str:
    """A whole day as ``YYYY-MM-DD``, a moment in UTC: the two forms the spec accepts."""
    return format_utc(moment) if isinstance(moment, datetime) else moment.isoformat()
