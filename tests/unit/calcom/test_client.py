"""The Cal.com client's envelope parsing and error mapping, over httpx.MockTransport."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from bookingguard.calcom import (
    CalcomAuthError,
    CalcomClient,
    CalcomConnectionError,
    CalcomMissingFields,
    CalcomNotFoundError,
    CalcomProtocolError,
    CalcomRateLimitedError,
    CalcomServerError,
    CalcomSlotUnavailableError,
    CalcomTimeoutError,
    CalcomValidationError,
    NewBooking,
)
from bookingguard.resilience import Outcome, classify_exception
from tests.support.calcom_standin import event_type_document

START = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)
BOOKING = {
    "id": 7,
    "uid": "abc123",
    "start": "2026-12-01T15:30:00.000Z",
    "end": "2026-12-01T16:00:00.000Z",
    "status": "accepted",
    "eventTypeId": 42,
    "metadata": {"bookingguard_key": "k1"},
    "attendees": [{"name": "Ada", "email": "ada@example.com", "timeZone": "Europe/Berlin"}],
}


def _client(handler: httpx.MockTransport, *, now: float = 1_700_000_000.0) -> CalcomClient:
    return CalcomClient(
        base_url="https://cal.test/v2", api_key="key-1", transport=handler, clock=lambda: now
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"status": "error", "error": {"code": "SomeException", "message": message}}
    return httpx.Response(status, json=body, headers=headers)


async def test_create_sends_documented_request_and_parses_envelope() -> None:
    """POST /v2/bookings carries the version header, Bearer key, UTC start and metadata."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.startswith("/v2/event-types/"):
            return httpx.Response(200, json={"status": "success", "data": event_type_document(42)})
        return httpx.Response(201, json={"status": "success", "data": BOOKING})

    new = NewBooking(
        start=datetime(2026, 12, 1, 16, 30, tzinfo=ZoneInfo("Europe/Berlin")),
        event_type_id=42,
        name="Ada",
        email="ada@example.com",
        phone_number="+4930123",
        time_zone="Europe/Berlin",
        metadata={"bookingguard_key": "k1", "retell_call_id": "call_1"},
    )
    async with _client(httpx.MockTransport(handle)) as client:
        booking = await client.create_booking(new)
    assert seen[0].url.path == "/v2/event-types/42"
    assert seen[0].headers["cal-api-version"] == "2024-06-14"
    request = seen[1]
    assert request.method == "POST"
    assert request.url.path == "/v2/bookings"
    assert request.headers["cal-api-version"] == "2024-08-13"
    assert request.headers["authorization"] == "Bearer key-1"
    body = json.loads(request.content)
    assert body["start"] == "2026-12-01T15:30:00.000Z"
    assert body["eventTypeId"] == 42
    assert body["attendee"] == {
        "name": "Ada",
        "email": "ada@example.com",
        "phoneNumber": "+4930123",
        "timeZone": "Europe/Berlin",
        "language": "en",
    }
    assert body["metadata"] == {"bookingguard_key": "k1", "retell_call_id": "call_1"}
    assert booking.id == 7
    assert booking.uid == "abc123"
    assert booking.start == START
    assert booking.event_type_id == 42
    assert booking.attendees[0].time_zone == "Europe/Berlin"


@pytest.mark.parametrize(
    ("status", "message", "error_type"),
    [
        (400, "email must be an email", CalcomValidationError),
        (
            400,
            "User either already has booking at this time or is not available",
            CalcomSlotUnavailableError,
        ),
        (401, "Invalid Access Token.", CalcomAuthError),
        (403, "Forbidden", CalcomAuthError),
        (404, "Booking not found", CalcomNotFoundError),
        (500, "Internal server error", CalcomServerError),
        (503, "Service unavailable", CalcomServerError),
    ],
)
async def test_error_envelope_maps_to_typed_error(
    status: int, message: str, error_type: type[Exception]
) -> None:
    """Each documented error status becomes its own typed error carrying the status code."""
    transport = httpx.MockTransport(lambda request: _error(status, message))
    async with _client(transport) as client:
        with pytest.raises(error_type) as caught:
            await client.get_booking("abc123")
    assert getattr(caught.value, "status_code", None) == status
    assert message in str(caught.value)


async def test_rate_limit_reads_retry_after_and_named_headers() -> None:
    """A 429 carries the limit, the remaining count and the seconds until reset."""
    headers = {
        "X-RateLimit-Limit-Default": "120",
        "X-RateLimit-Remaining-Default": "0",
        "X-RateLimit-Reset-Default": str(1_700_000_000 + 12),
    }
    transport = httpx.MockTransport(lambda request: _error(429, "Too Many Requests", headers))
    async with _client(transport) as client:
        with pytest.raises(CalcomRateLimitedError) as caught:
            await client.get_booking("abc123")
    assert caught.value.status_code == 429
    assert caught.value.limit == 120
    assert caught.value.remaining == 0
    assert caught.value.retry_after == pytest.approx(12.0)


async def test_retry_after_header_wins_over_reset() -> None:
    """``Retry-After`` in seconds is used when present."""
    headers = {"Retry-After": "3", "X-RateLimit-Reset": "60"}
    transport = httpx.MockTransport(lambda request: _error(429, "slow down", headers))
    async with _client(transport) as client:
        with pytest.raises(CalcomRateLimitedError) as caught:
            await client.list_bookings()
    assert caught.value.retry_after == 3.0


async def test_non_envelope_answer_is_a_protocol_error() -> None:
    """A 200 that is not Cal.com's success envelope is refused, not trusted."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>proxy</html>"))
    async with _client(transport) as client:
        with pytest.raises(CalcomProtocolError):
            await client.get_booking("abc123")


async def test_read_timeout_has_unknown_outcome() -> None:
    """A read timeout after the request was sent may have booked: outcome_unknown is set."""

    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with _client(httpx.MockTransport(handle)) as client:
        with pytest.raises(CalcomTimeoutError) as caught:
            await client.get_booking("x")
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.outcome_unknown is True


async def test_connect_error_has_known_outcome() -> None:
    """A refused connection never reached Cal.com: outcome_unknown is False."""

    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with _client(httpx.MockTransport(handle)) as client:
        with pytest.raises(CalcomConnectionError) as caught:
            await client.get_booking("x")
    assert caught.value.outcome_unknown is False


async def test_list_sends_filters_and_reads_pagination() -> None:
    """Filters go out in Cal.com's names; hasNextPage drives the iterator across pages."""
    pages = {
        0: [BOOKING, {**BOOKING, "id": 8, "uid": "def456"}],
        2: [{**BOOKING, "id": 9, "uid": "g"}],
    }
    seen: list[httpx.QueryParams] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params)
        skip = int(request.url.params["skip"])
        items = pages.get(skip, [])
        body = {
            "status": "success",
            "data": items,
            "pagination": {"totalItems": 3, "hasNextPage": skip + len(items) < 3},
        }
        return httpx.Response(200, json=body)

    after = datetime(2026, 12, 1, tzinfo=UTC)
    async with _client(httpx.MockTransport(handle)) as client:
        uids = [
            b.uid
            async for b in client.iter_bookings(
                after_start=after, status="upcoming", event_type_id=42, take=2
            )
        ]
    assert uids == ["abc123", "def456", "g"]
    assert seen[0]["afterStart"] == "2026-12-01T00:00:00.000Z"
    assert seen[0]["status"] == "upcoming"
    assert seen[0]["eventTypeId"] == "42"
    assert [p["skip"] for p in seen] == ["0", "2"]


def test_missing_fields_is_a_caller_error_the_breaker_ignores() -> None:
    """CalcomMissingFields is a 4xx validation error: ignored by the breaker, not retried."""
    error = CalcomMissingFields(["phone", "insurance-number"])
    assert isinstance(error, CalcomValidationError)
    assert classify_exception(error) is Outcome.IGNORED
    assert error.fields == ["phone", "insurance-number"]
    assert "phone, insurance-number" in str(error)
