"""bookingguard: keeps appointment booking by voice agents consistent (no phantom bookings).

The names below are the package's public surface. They load lazily, so
``import bookingguard`` stays cheap and builds nothing (no engine, client or app).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bookingguard.booking import (
        BookingRequest,
        BookingService,
        PostBookingValidator,
        RollbackFailedError,
        ValidationResult,
    )
    from bookingguard.resilience import (
        CircuitBreaker,
        CircuitOpenError,
        MemoryStore,
        OperationTimeoutError,
        RedisStore,
        SqlStore,
        store_from_settings,
    )
    from bookingguard.settings import Settings

__all__ = [
    "BookingRequest",
    "BookingService",
    "CircuitBreaker",
    "CircuitOpenError",
    "MemoryStore",
    "OperationTimeoutError",
    "PostBookingValidator",
    "RedisStore",
    "RollbackFailedError",
    "Settings",
    "SqlStore",
    "ValidationResult",
    "store_from_settings",
]

_HOMES = {
    "BookingRequest": "bookingguard.booking",
    "BookingService": "bookingguard.booking",
    "PostBookingValidator": "bookingguard.booking",
    "RollbackFailedError": "bookingguard.booking",
    "ValidationResult": "bookingguard.booking",
    "CircuitBreaker": "bookingguard.resilience",
    "CircuitOpenError": "bookingguard.resilience",
    "MemoryStore": "bookingguard.resilience",
    "OperationTimeoutError": "bookingguard.resilience",
    "RedisStore": "bookingguard.resilience",
    "SqlStore": "bookingguard.resilience",
    "store_from_settings": "bookingguard.resilience",
    "Settings": "bookingguard.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bookingguard' has no attribute {name!r}")
    return getattr(import_module(home), name)
