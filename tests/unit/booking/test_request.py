"""BookingRequest's idempotency key (stable per call and slot, overridable), its Cal.com create,
and the sentence of an outcome still confirming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bookingguard.api.routes.retell_words import SORRY, booking_sentence
from bookingguard.booking import BookingOutcome, BookingRequest, BookingResult, circuit_key_for

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


def test_the_create_carries_the_key_and_the_call_in_its_metadata() -> None:
    """What Cal.com is asked to book names our key and the call: the key a webhook or a
    look-up matches to the claim."""
    request = _request(phone="+4930123456")
    new = request.new_booking()
    assert new.metadata == {"bookingguard_idempotency_key": request.key, "retell_call_id": "call_1"}
    assert (new.start, new.event_type_id, new.phone) == (SLOT, 42, "+4930123456")


def test_confirming_is_said_as_such() -> None:
    """A request whose key another request is still booking is told to ask again, not sorry."""
    sentence = booking_sentence(BookingOutcome(BookingResult.CONFIRMING), "Europe/Berlin")
    assert "still confirming" in sentence
    assert sentence != SORRY
