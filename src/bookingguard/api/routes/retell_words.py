"""What the agent says: the sentences the agent's functions answer with."""

from __future__ import annotations

from datetime import datetime
from itertools import groupby
from zoneinfo import ZoneInfo

from bookingguard.booking import BookingOutcome, BookingResult
from bookingguard.calcom import Slot

__all__ = [
    "CANT_BOOK_THAT",
    "SORRY",
    "booking_sentence",
    "cancel_sentence",
    "reschedule_sentence",
    "slots_sentence",
    "when",
]

SORRY = (
    "I'm sorry, I couldn't confirm your booking right now. A member of our team "
    "will call you back shortly to schedule your appointment."
)
_SORRY_CHANGE = (
    "I'm sorry, I couldn't change your appointment right now. A member of our team "
    "will call you back shortly."
)
_TAKEN = "I'm sorry, that time is no longer available. Would you like to pick another time?"
_CONFIRMING = "I'm still confirming that booking. Give me a moment, then I'll check again."
CANT_BOOK_THAT = "I'm sorry, I can't book that kind of appointment."


def when(moment: datetime, time_zone: str) -> str:
    """``Thursday, December 3 at 3:00 PM`` in the caller's zone."""
    local = moment.astimezone(ZoneInfo(time_zone))
    return f"{local:%A, %B} {local.day} at {local:%I:%M %p}".replace(" 0", " ")


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def slots_sentence(slots: list[Slot], time_zone: str) -> str:
    """``I have Tuesday 9 December at 10:00, 10:30 or 11:00.``, day by day."""
    if not slots:
        return "I'm sorry, I don't see any free time in the next two weeks."
    zone = ZoneInfo(time_zone)
    local = [slot.start.astimezone(zone) for slot in slots]
    days = [
        f"{day:%A} {day.day} {day:%B} at {_or([f'{t:%H:%M}' for t in times])}"
        for day, times in ((d, list(ts)) for d, ts in groupby(local, key=lambda t: t.date()))
    ]
    return f"I have {', or '.join(days)}. Which would suit you?"


def booking_sentence(outcome: BookingOutcome | None, time_zone: str) -> str:
    """The answer to a booking: booked, requested, taken or sorry."""
    if outcome is None:
        return SORRY
    if outcome.start is not None and outcome.booked:
        return f"You're booked for {when(outcome.start, time_zone)}."
    if outcome.start is not None and outcome.result is BookingResult.PENDING:
        return (
            f"I've requested {when(outcome.start, time_zone)} for you. You'll get a "
            "confirmation once it is accepted."
        )
    if outcome.result is BookingResult.SLOT_UNAVAILABLE:
        return _TAKEN
    if outcome.result is BookingResult.CONFIRMING:
        return _CONFIRMING
    return SORRY


def reschedule_sentence(outcome: BookingOutcome, time_zone: str) -> str:
    """The answer to a reschedule."""
    if outcome.result is BookingResult.RESCHEDULED and outcome.start is not None:
        return f"Done: your appointment is now on {when(outcome.start, time_zone)}."
    if outcome.result is BookingResult.NO_APPOINTMENT:
        return "I don't see an appointment on this call to move. Would you like to book one?"
    if outcome.result is BookingResult.SLOT_UNAVAILABLE:
        return _TAKEN
    return _SORRY_CHANGE


def cancel_sentence(outcome: BookingOutcome, time_zone: str) -> str:
    """The answer to a cancellation."""
    if outcome.result is BookingResult.CANCELLED and outcome.start is not None:
        return f"Your appointment on {when(outcome.start, time_zone)} is cancelled."
    if outcome.result is BookingResult.NO_APPOINTMENT:
        return "I don't see an appointment on this call to cancel."
    return _SORRY_CHANGE
