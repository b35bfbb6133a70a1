"""The booking path: idempotent, guarded booking, post-booking validation and rollback."""

from bookingguard.booking.errors import RollbackFailedError
from bookingguard.booking.metrics import BookingMetrics, default_booking_metrics
from bookingguard.booking.ports import Breaker, CalcomBookings, Retrier
from bookingguard.booking.rollback import rollback_on_failure
from bookingguard.booking.service import BookingService
from bookingguard.booking.sql_store import SqlBookingStore
from bookingguard.booking.store import BookingStore
from bookingguard.booking.types import (
    BookingOutcome,
    BookingRequest,
    BookingResult,
    circuit_key_for,
)
from bookingguard.booking.validation import PostBookingValidator, ValidationResult

__all__ = [
    "BookingMetrics",
    "BookingOutcome",
    "BookingRequest",
    "BookingResult",
    "BookingService",
    "BookingStore",
    "Breaker",
    "CalcomBookings",
    "PostBookingValidator",
    "Retrier",
    "RollbackFailedError",
    "SqlBookingStore",
    "ValidationResult",
    "circuit_key_for",
    "default_booking_metrics",
    "rollback_on_failure",
]
