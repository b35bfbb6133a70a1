"""The demo's rows: customers, calls of each planned kind and their appointments."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

__all__ = ["RowFactory"]

OTHER_OUTCOMES = (
    ("information_only", 35),
    ("callback_requested", 20),
    ("voicemail", 15),
    ("transferred", 10),
    ("abandoned", 10),
    ("spam", 5),
    ("technical_issue", 5),
)
FAILURE_REASONS = (
    "Cal.com answered 503 three times; retries exhausted",
    "slot no longer available",
    "timeout contacting Cal.com; booking lookup found nothing",
    "post-booking validation failed: missing_calcom_booking_id",
)
FIRST_NAMES = (
    "Anna", "Ben", "Carla", "David", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas",
    "Kira", "Luca", "Mila", "Noah", "Olga", "Paul", "Rosa", "Sami", "Tara", "Yusuf",
)  # fmt: skip
LAST_NAMES = (
    "Becker", "Costa", "Dubois", "Engel", "Fischer", "Garcia", "Hansen", "Ivanova",
    "Jensen", "Kowalski", "Larsen", "Meyer", "Novak", "Okafor", "Petrov", "Rossi",
)  # fmt: skip
EVENT_TYPES = (1001, 1002, 1003)


class RowFactory:
    """Draws rows from one ``random.Random``, with times up to ``now`` over ``days`` days."""

    def __init__(self, rng: random.Random, now: datetime, days: int) -> None:
        self.rng = rng
        self.now = now
        self.days = days
        self.counter = 0

    def phone(self) -> str:
        return f"+1555{self.rng.randrange(10**7):07d}"

    def customer(self, index: int) -> dict[str, Any]:
        first = self.rng.choice(FIRST_NAMES)
        last = self.rng.choice(LAST_NAMES)
        created = self.now - timedelta(days=self.days + self.rng.uniform(1, 365))
        return {
            "name": f"{first} {last}",
            "phone": self.phone(),
            "email": f"{first}.{last}.{index}@example.com".lower(),
            "created_at": created,
            "updated_at": created,
        }

    def started_at(self, *, within: timedelta | None = None) -> datetime:
        span = within or timedelta(days=self.days)
        return self.now - timedelta(seconds=self.rng.uniform(120, span.total_seconds()))

    def call(
        self, kind: str, customer_id: int, *, within: timedelta | None = None
    ) -> dict[str, Any]:
        self.counter += 1
        started = self.started_at(within=within)
        ended = started + timedelta(seconds=self.rng.randint(45, 600))
        outcome = self.rng.choices(
            [name for name, _ in OTHER_OUTCOMES], [weight for _, weight in OTHER_OUTCOMES]
        )[0]
        row: dict[str, Any] = {
            "retell_call_id": f"demo_call_{self.counter:06d}_{self.rng.randrange(16**8):08x}",
            "customer_id": customer_id,
            "customer_link_status": "linked",
            "customer_linked_at": started,
            "direction": "inbound" if self.rng.random() < 0.85 else "outbound",
            "from_number": self.phone(),
            "to_number": "+15550100200",
            "call_status": "ended",
            "session_outcome": outcome,
            "appointment_made": False,
            "appointment_link_status": "not_applicable",
            "appointment_linked_at": None,
            "booking_failed": False,
            "booking_failure_reason": None,
            "requires_manual_processing": False,
            "started_at": started,
            "ended_at": ended,
            "created_at": started,
            "updated_at": ended,
        }
        booked = {
            "session_outcome": "appointment_booked",
            "appointment_made": True,
            "appointment_link_status": "linked",
            "appointment_linked_at": ended,
        }
        if kind in ("booked", "inconsistent_link_status"):
            row.update(booked)
        if kind == "inconsistent_link_status":
            row["appointment_link_status"] = "unlinked"
        elif kind == "missing_appointment":
            row.update(
                booked, appointment_link_status="pending_creation", appointment_linked_at=None
            )
        elif kind == "auto_corrected":
            row.update(booked, appointment_made=False)
        elif kind == "cancelled":
            row.update(session_outcome="appointment_cancelled", appointment_link_status="unlinked")
        elif kind == "mismatch_flag":
            row.update(booked, session_outcome="callback_requested")
        elif kind == "mismatch_outcome":
            row.update(session_outcome="appointment_booked")
        elif kind == "missing_direction":
            row["direction"] = None
        elif kind == "recent_failures":
            row.update(
                session_outcome="creation_failed",
                appointment_link_status="creation_failed",
                booking_failed=True,
                booking_failure_reason=self.rng.choice(FAILURE_REASONS),
                requires_manual_processing=True,
            )
        return row

    def appointment(
        self, call: dict[str, Any] | None, call_id: int | None, customer_id: int, *, status: str
    ) -> dict[str, Any]:
        self.counter += 1
        created = call["ended_at"] if call else self.started_at()
        starts = created + timedelta(days=self.rng.randint(1, 21), hours=self.rng.randint(0, 8))
        starts = starts.replace(minute=self.rng.choice((0, 30)), second=0, microsecond=0)
        if status == "booked" and starts < self.now:
            status = self.rng.choices(["completed", "no_show"], [9, 1])[0]
        elif status == "booked":
            status = self.rng.choices(["booked", "confirmed"], [1, 2])[0]
        booking_id = 5_000_000 + self.counter
        return {
            "call_id": call_id,
            "customer_id": customer_id,
            "event_type_id": self.rng.choice(EVENT_TYPES),
            "calcom_v2_booking_id": booking_id,
            "calcom_booking_uid": f"demo-{booking_id:x}-{self.rng.randrange(16**6):06x}",
            "starts_at": starts,
            "ends_at": starts + timedelta(minutes=30),
            "status": status,
            "idempotency_key": f"demo:{booking_id}",
            "created_at": created,
            "updated_at": created,
        }
