"""BookingRequest's idempotency key: stable per call and slot, overridable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bookingguard.booking import BookingRequest, circuit_key_for

SLOT = datetime(2026, 12, 3, 14, tzinfo=UTC)


def _request(**changes: object) -> BookingRequest:
    values: dict[str, object] = {
        "retell_call_id": "call_1",
        "start": SLOT,
        "event_type_id": 42,
        "name": "Ada",
        "time_zone": "Europe/Berlin",
        "email": "ada@example.com",
    }
    values.update(changes)
    return BookingRequest(**values)  # type: ignore[arg-type]


def test_same_call_and_slot_give_the_same_key() -> None:
    """The same instant written in another zone, or another caller name, keeps the key."""
    berlin = SLOT.astimezone(ZoneInfo("Europe/Berlin"))
    assert _request().key == _request(start=berlin, name="Ada L.").key


def test_other_call_slot_or_event_type_change_the_key() -> None:
    """A different call, slot or event type is a different booking."""
    keys = {
        _request().key,
        _request(retell_call_id="call_2").key,
        _request(start=SLOT + timedelta(minutes=30)).key,
        _request(event_type_id=43).key,
    }
    assert len(keys) == 4


def test_given_key_wins() -> None:
    """An explicit idempotency key is used as is."""
    assert _request(idempotency_key="order-77").key == "order-77"


def test_circuit_key_names_the_event_type() -> None:
    """Bookings are guarded per event type."""
    assert circuit_key_for(42) == "appointment_booking:event_type:42"
