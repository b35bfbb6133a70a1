"""The Cal.com client against the stand-in: a real HTTP server on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bookingguard.calcom import (
    CalcomAuthError,
    CalcomClient,
    CalcomConnectionError,
    CalcomNotFoundError,
    CalcomRateLimitedError,
    CalcomServerError,
    CalcomSlotUnavailableError,
    CalcomTimeoutError,
    NewBooking,
)
from tests.support.calcom_standin import CalcomStandin

START = datetime(2036, 12, 1, 15, 30, tzinfo=UTC)  # in the future: "upcoming" is by the real clock


def _client(standin: CalcomStandin, *, read_timeout: float = 2.0) -> CalcomClient:
    return CalcomClient(
        base_url=standin.base_url,
        api_key=standin.api_key,
        connect_timeout=1.0,
        read_timeout=read_timeout,
    )


def _new(start: datetime = START, **metadata: str) -> NewBooking:
    return NewBooking(
        start=start,
        event_type_id=42,
        name="Ada",
        email="ada@example.com",
        time_zone="Europe/Berlin",
        metadata=metadata,
    )


async def test_create_get_cancel_round_trip(calcom_standin: CalcomStandin) -> None:
    """A booking made through the client can be read back and cancelled."""
    async with _client(calcom_standin) as client:
        made = await client.create_booking(_new(k="v"))
        fetched = await client.get_booking(made.uid)
        cancelled = await client.cancel_booking(made.uid, reason="caller changed mind")
    assert fetched == made
    assert made.metadata == {"k": "v"}
    assert made.end - made.start == timedelta(minutes=30)
    assert cancelled.is_cancelled
    versions = {r.route: r.headers["cal-api-version"] for r in calcom_standin.requests}
    assert versions == {
        "event_type": "2024-06-14",
        "create": "2024-08-13",
        "get": "2024-08-13",
        "cancel": "2024-08-13",
    }


async def test_wrong_key_is_an_auth_error(calcom_standin: CalcomStandin) -> None:
    """The stand-in checks the Bearer key like Cal.com does."""
    client = CalcomClient(base_url=calcom_standin.base_url, api_key="wrong")
    async with client:
        with pytest.raises(CalcomAuthError):
            await client.list_bookings()


async def test_taken_slot_is_slot_unavailable(calcom_standin: CalcomStandin) -> None:
    """Booking a slot that is already taken raises CalcomSlotUnavailableError (a 4xx)."""
    async with _client(calcom_standin) as client:
        await client.create_booking(_new())
        with pytest.raises(CalcomSlotUnavailableError) as caught:
            await client.create_booking(_new())
    assert caught.value.status_code == 400


async def test_unknown_uid_is_not_found(calcom_standin: CalcomStandin) -> None:
    """GET of a uid Cal.com does not have raises CalcomNotFoundError."""
    async with _client(calcom_standin) as client:
        with pytest.raises(CalcomNotFoundError):
            await client.get_booking("nope")


async def test_injected_500_and_429(calcom_standin: CalcomStandin) -> None:
    """Injected faults come back as the typed errors, once each, then service resumes."""
    calcom_standin.fail_next("list", status=502)
    calcom_standin.rate_limit_next("list", reset_seconds=7)
    async with _client(calcom_standin) as client:
        with pytest.raises(CalcomServerError):
            await client.list_bookings()
        with pytest.raises(CalcomRateLimitedError) as caught:
            await client.list_bookings()
        page = await client.list_bookings()
    assert caught.value.retry_after == 7.0
    assert caught.value.remaining == 0
    assert page.bookings == ()


async def test_hang_past_timeout_is_unknown_outcome_timeout(calcom_standin: CalcomStandin) -> None:
    """A create that hangs past the read timeout raises a timeout with an unknown outcome."""
    calcom_standin.hang_next("create", seconds=2.0)
    async with _client(calcom_standin, read_timeout=0.2) as client:
        with pytest.raises(CalcomTimeoutError) as caught:
            await client.create_booking(_new())
    assert caught.value.outcome_unknown
    assert calcom_standin.bookings() == []


async def test_lost_response_books_but_raises(calcom_standin: CalcomStandin) -> None:
    """'Booked but the response was lost': the client sees an error, Cal.com has the booking."""
    calcom_standin.lose_response_next("create")
    async with _client(calcom_standin) as client:
        with pytest.raises(CalcomConnectionError) as caught:
            await client.create_booking(_new(bookingguard_key="k-lost"))
        found = [b async for b in client.iter_bookings(event_type_id=42)]
    assert caught.value.outcome_unknown
    assert [b.metadata["bookingguard_key"] for b in found] == ["k-lost"]


async def test_list_filters_and_pages(calcom_standin: CalcomStandin) -> None:
    """afterStart/beforeEnd/status filter, and the iterator walks every page."""
    for hours in range(5):
        calcom_standin.add_booking(start=START + timedelta(hours=hours), event_type_id=42)
    first = calcom_standin.bookings()[0]
    calcom_standin.cancel(first["uid"])
    async with _client(calcom_standin) as client:
        window = await client.list_bookings(
            after_start=START + timedelta(hours=1),
            before_end=START + timedelta(hours=3, minutes=30),
        )
        upcoming = [b async for b in client.iter_bookings(status="upcoming", take=2)]
        cancelled = await client.list_bookings(status="cancelled")
    assert [b.start for b in window.bookings] == [START + timedelta(hours=h) for h in (1, 2, 3)]
    assert len(upcoming) == 4
    assert [b.uid for b in cancelled.bookings] == [first["uid"]]
