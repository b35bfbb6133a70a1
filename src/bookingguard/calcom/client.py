"""Cal.com v2 client (httpx, async): create, get, list and cancel bookings.

An adapter with no policy: it speaks the ``{"status": "success", "data": …}``
envelope and turns the error envelope into the typed errors of
``bookingguard.calcom.errors``. Retrying and circuit breaking are the caller's.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import ValidationError

from bookingguard.calcom.errors import (
    CalcomAuthError,
    CalcomConnectionError,
    CalcomError,
    CalcomNotFoundError,
    CalcomProtocolError,
    CalcomRateLimitedError,
    CalcomServerError,
    CalcomSlotUnavailableError,
    CalcomTimeoutError,
    CalcomValidationError,
)
from bookingguard.calcom.models import BookingPage, CalcomBooking, NewBooking, format_utc
from bookingguard.settings import Settings

__all__ = ["CalcomClient"]

_SLOT_UNAVAILABLE = re.compile(
    r"not available|no_available_users|already has booking|slot|unavailable", re.IGNORECASE
)
#: A reset header above this is an absolute Unix time, below it a number of seconds.
_EPOCH_THRESHOLD = 1_000_000_000


class CalcomClient:
    """Async Cal.com v2 bookings client. Use as ``async with`` or call ``aclose()``."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        api_version: str = "2024-08-13",
        connect_timeout: float = 3.0,
        read_timeout: float = 8.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={
                "Authorization": f"Bearer {api_key}",
                "cal-api-version": api_version,
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> CalcomClient:
        """A client for the configured base URL, key, API version and timeouts."""
        key = settings.calcom.api_key
        return cls(
            base_url=settings.calcom.base_url,
            api_key=key.get_secret_value() if key is not None else "",
            api_version=settings.calcom.api_version,
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

    async def create_booking(self, booking: NewBooking) -> CalcomBooking:
        """``POST /v2/bookings``. A timeout or dropped connection leaves the outcome unknown."""
        data = await self._request("POST", "bookings", json=booking.to_json())
        return _parse_booking(data)

    async def get_booking(self, uid: str) -> CalcomBooking:
        """``GET /v2/bookings/{uid}``; ``CalcomNotFoundError`` if there is none."""
        data = await self._request("GET", f"bookings/{uid}")
        return _parse_booking(data)

    async def cancel_booking(self, uid: str, *, reason: str) -> CalcomBooking:
        """``POST /v2/bookings/{uid}/cancel`` with a cancellation reason."""
        data = await self._request(
            "POST", f"bookings/{uid}/cancel", json={"cancellationReason": reason}
        )
        return _parse_booking(data)

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
        response = await self._send("GET", "bookings", params=params)
        body = _success_body(response)
        items = body.get("data")
        if not isinstance(items, list):
            raise CalcomProtocolError(
                "bookings list without a data array", status_code=response.status_code
            )
        bookings = tuple(_parse_booking(item) for item in items)
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
        self, method: str, path: str, *, json: Mapping[str, object] | None = None
    ) -> object:
        response = await self._send(method, path, json=json)
        return _success_body(response).get("data")

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, object] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, json=json, params=params)
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
            raise self._error_for(response)
        return response

    def _error_for(self, response: httpx.Response) -> CalcomError:
        status = response.status_code
        error_code, message = _error_details(response)
        text = f"Cal.com {response.request.method} {response.request.url.path}: {status} {message}"
        if status == 429:
            return CalcomRateLimitedError(
                text,
                error_code=error_code,
                retry_after=_retry_after(response.headers, now=self._clock()),
                limit=_rate_header(response.headers, "x-ratelimit-limit"),
                remaining=_rate_header(response.headers, "x-ratelimit-remaining"),
            )
        if status >= 500:
            return CalcomServerError(text, status_code=status, error_code=error_code)
        if status in (401, 403):
            return CalcomAuthError(text, status_code=status, error_code=error_code)
        if status == 404:
            return CalcomNotFoundError(text, status_code=status, error_code=error_code)
        if status == 409 or (status == 400 and _SLOT_UNAVAILABLE.search(message)):
            return CalcomSlotUnavailableError(text, status_code=status, error_code=error_code)
        return CalcomValidationError(text, status_code=status, error_code=error_code)


def _success_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise CalcomProtocolError(
            "Cal.com answered with something other than JSON", status_code=response.status_code
        ) from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        raise CalcomProtocolError(
            "Cal.com answered without a success envelope", status_code=response.status_code
        )
    return body


def _parse_booking(data: object) -> CalcomBooking:
    try:
        return CalcomBooking.model_validate(data)
    except ValidationError as exc:
        raise CalcomProtocolError(f"unexpected Cal.com booking shape: {exc}") from exc


def _error_details(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.reason_phrase or "error"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        return (
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else str(message or "error"),
        )
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return None, str(body["message"])
    return None, response.reason_phrase or "error"


def _header_with_prefix(headers: httpx.Headers, prefix: str) -> str | None:
    """``X-RateLimit-Reset`` or Cal.com's named form ``X-RateLimit-Reset-Default``."""
    if prefix in headers:
        return headers[prefix]
    for name, value in headers.items():
        if name.lower().startswith(prefix + "-"):
            return value
    return None


def _rate_header(headers: httpx.Headers, prefix: str) -> int | None:
    raw = _header_with_prefix(headers, prefix)
    try:
        return int(float(raw)) if raw is not None else None
    except ValueError:
        return None


def _retry_after(headers: httpx.Headers, *, now: float) -> float | None:
    """Seconds to wait: ``Retry-After``, else the rate-limit reset (seconds or a Unix time)."""
    for raw in (headers.get("retry-after"), _header_with_prefix(headers, "x-ratelimit-reset")):
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if value > _EPOCH_THRESHOLD:
            value -= now
        return max(value, 0.0)
    return None
