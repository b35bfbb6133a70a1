"""Breaker events for listeners: transitions, rejected calls, store switches."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bookingguard.resilience.machine import Transition

__all__ = ["BreakerEvent", "EventKind", "Listener"]


class EventKind(enum.StrEnum):
    TRANSITION = "transition"
    NOT_PERMITTED = "not_permitted"
    STORAGE_DEGRADED = "storage_degraded"
    STORAGE_RECOVERED = "storage_recovered"


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """One thing that happened; ``transition`` is set for transitions, the stores for switches."""

    kind: EventKind
    circuit_key: str | None = None
    transition: Transition | None = None
    from_store: str | None = None
    to_store: str | None = None
    at: datetime | None = None


#: A listener must not block: it runs on the caller's path. Its exceptions are logged.
Listener = Callable[[BreakerEvent], None]
