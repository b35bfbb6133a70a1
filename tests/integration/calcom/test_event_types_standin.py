"""Event types, slots, reschedule, confirm and decline against the stand-in, held to the spec."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bookingguard.calcom import (
    ApiVersions,
    CalcomClient,
    CalcomMissingFields,
    CalcomValidationError,
    NewBooking,
)
from tests.support.calcom_standin import CalcomStandin

START = datetime(2036, 12, 1, 10, 0, tzinfo=UTC)


def _client(standin: CalcomStandin, **kwargs: object) -> CalcomClient:
    return CalcomClient(base_url=standin.base_url, api_key=standin.api_key, **kwargs)  # type: ignore[arg-type]


def _new(event_type_id: int, **fields: object) -> NewBooking:
    return NewBooking(
        start=fields.pop("start", START),  # type: ignore[arg-type]
        event_type_id=event_type_id,
        name="Ada",
        email="ada@example.com",
        time_zone="Europe/Berlin",
        metadata={"bookingguard_key": "k"},
        **fields,  # type: ignore[arg-type]
    )


async def test_required_field_is_asked_for_before_any_request(
    calcom_standin: CalcomStandin,
) -> None:
    """A required custom field without an answer raises CalcomMissingFields, nothing is booked."""
    calcom_standin.add_event_type(7, required_fields=("insurance-number",))
    async with _client(calcom_standin) as client:
        with pytest.raises(CalcomMissingFields) as caught:
            await client.create_booking(_new(7))
        booked = await client.create_booking(_new(7, responses={"insurance-number": "A-12"}))
    assert caught.value.fields == ["insurance-number"]
    assert caught.value.status_code == 422
    assert [r.route for r in calcom_standin.requests] == ["event_type", "create"]
    assert calcom_standin.bookings()[0]["bookingFieldsResponses"] == {"insurance-number": "A-12"}
    assert booked.status == "accepted"


async def test_attendee_phone_location_sends_the_callers_number(
    calcom_standin: CalcomStandin,
) -> None:
    """An attendee-phone event type gets location attendeePhone with the caller's number."""
    calcom_standin.add_event_type(8, locations=({"type": "attendeePhone"},))
    async with _client(calcom_standin) as client:
        with pytest.raises(CalcomMissingFields) as caught:
            await client.create_booking(_new(8))
        await client.create_booking(_new(8, phone="+4930123456"))
    assert caught.value.fields == ["phone"]
    create = next(r for r in calcom_standin.requests if r.route == "create")
    assert create.body["location"] == {"type": "attendeePhone", "phone": "+4930123456"}


async def test_stand_in_refuses_attendee_phone_booking_without_location(
    calcom_standin: CalcomStandin,
) -> None:
    """The stand-in enforces the event type itself: no location for an attendee-phone type."""
    calcom_standin.add_event_type(8, locations=({"type": "attendeePhone"},))
    async with _client(calcom_standin) as client:
        with pytest.raises(CalcomValidationError, match="location is required"):
            await client._request(
                "POST",
                "bookings",
                json={
                    "start": "2036-12-01T10:00:00.000Z",
                    "eventTypeId": 8,
                    "attendee": {"name": "Ada", "timeZone": "UTC"},
                },
            )


async def test_sms_reminders_put_the_phone_on_the_attendee(calcom_standin: CalcomStandin) -> None:
    """An event type sending SMS reminders gets attendee.phoneNumber from the caller's phone."""
    calcom_standin.add_event_type(9, sms_reminders=True)
    async with _client(calcom_standin) as client:
        with pytest.raises(CalcomMissingFields) as caught:
            await client.create_booking(_new(9))
        booked = await client.create_booking(_new(9, phone="+4930999"))
    assert caught.value.fields == ["phone"]
    assert booked.attendees[0].phone_number == "+4930999"


async def test_lengths_choose_among_options(calcom_standin: CalcomStandin) -> None:
    """lengthInMinutes is sent when the event type offers several; others are refused first."""
    calcom_standin.add_event_type(10, length_minutes=30, length_options=(30, 60))
    async with _client(calcom_standin) as client:
        with pytest.raises(CalcomMissingFields) as caught:
            await client.create_booking(_new(10, length_minutes=45))
        booked = await client.create_booking(_new(10, length_minutes=60))
    assert caught.value.fields == ["length_minutes"]
    assert booked.end - booked.start == timedelta(minutes=60)


async def test_confirmation_policy_books_pending_then_confirm_or_decline(
    calcom_standin: CalcomStandin,
) -> None:
    """An event type requiring confirmation books pending; confirm accepts, decline rejects."""
    calcom_standin.add_event_type(11, requires_confirmation=True)
    async with _client(calcom_standin) as client:
        first = await client.create_booking(_new(11))
        second = await client.create_booking(_new(11, start=START + timedelta(hours=1)))
        confirmed = await client.confirm_booking(first.uid)
        declined = await client.decline_booking(second.uid, reason="fully booked")
    assert first.is_pending
    assert second.is_pending
    assert confirmed.status == "accepted"
    assert declined.status == "rejected"
    assert declined.is_cancelled


async def test_minimum_notice_is_enforced(calcom_standin: CalcomStandin) -> None:
    """A start inside the minimum booking notice is refused with a 4xx."""
    calcom_standin.add_event_type(12, minimum_notice_minutes=120)
    soon = datetime.now(UTC) + timedelta(minutes=30)
    async with _client(calcom_standin) as client:
        with pytest.raises(CalcomValidationError, match="minimum booking notice"):
            await client.create_booking(_new(12, start=soon))


async def test_slots_in_the_callers_time_zone_without_taken_ones(
    calcom_standin: CalcomStandin,
) -> None:
    """GET /v2/slots answers free slots in the asked zone; a booked one is left out."""
    calcom_standin.add_event_type(13, length_minutes=60)
    async with _client(calcom_standin) as client:
        await client.create_booking(_new(13, start=START))
        slots = await client.get_slots(
            13, start=date(2036, 12, 1), end=date(2036, 12, 1), time_zone="Europe/Berlin"
        )
    starts = [slot.start.astimezone(UTC).hour for slot in slots]
    assert starts == [9, 11, 12, 13, 14, 15, 16]
    assert slots[0].start.utcoffset() == timedelta(hours=1)
    request = next(r for r in calcom_standin.requests if r.route == "slots")
    assert request.headers["cal-api-version"] == "2024-09-04"


async def test_reschedule_links_old_and_new(calcom_standin: CalcomStandin) -> None:
    """A reschedule makes a new booking from the old, which is cancelled and linked."""
    async with _client(calcom_standin) as client:
        old = await client.create_booking(_new(42))
        new = await client.reschedule_booking(
            old.uid, start=START + timedelta(days=1), reason="caller asked"
        )
        old_after = await client.get_booking(old.uid)
    assert new.rescheduled_from_uid == old.uid
    assert new.start == START + timedelta(days=1)
    assert new.metadata == old.metadata
    assert old_after.status == "cancelled"
    assert old_after.rescheduled_to_uid == new.uid


async def test_event_type_is_cached_for_its_ttl(calcom_standin: CalcomStandin) -> None:
    """The event type is fetched once per TTL of the injected clock."""
    now = [1000.0]
    async with _client(calcom_standin, clock=lambda: now[0], event_type_cache_seconds=60) as client:
        await client.get_event_type(42)
        now[0] += 59
        await client.get_event_type(42)
        now[0] += 1
        await client.get_event_type(42)
    assert calcom_standin.request_count("event_type") == 2


async def test_versions_are_configurable_per_endpoint(calcom_standin: CalcomStandin) -> None:
    """A version the spec does not document is a contract violation, raised at stop."""
    async with _client(calcom_standin, versions=ApiVersions(slots="2024-08-13")) as client:
        with pytest.raises(CalcomValidationError, match="contract violation"):
            await client.get_slots(
                42, start=date(2036, 12, 1), end=date(2036, 12, 1), time_zone="UTC"
            )
    assert "cal-api-version '2024-08-13'" in calcom_standin.violations[0]
    calcom_standin.clear_violations()
