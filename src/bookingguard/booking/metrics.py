"""Prometheus metrics of the booking path (labels stay bounded: outcome, reason)."""

from __future__ import annotations

from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

__all__ = ["BookingMetrics", "default_booking_metrics"]

_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class BookingMetrics:
    """Validation duration and failures, rollbacks, bookings by outcome, compensations, retries."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.validation_duration = Histogram(
            "bookingguard_validation_duration_seconds",
            "Post-booking validation time per call",
            ["outcome"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.validation_failures = Counter(
            "bookingguard_validation_failures_total",
            "Post-booking validation failures by reason",
            ["reason"],
            registry=registry,
        )
        self.rollbacks = Counter(
            "bookingguard_rollbacks_total",
            "Rollbacks of a call's booking flags, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.bookings = Counter(
            "bookingguard_bookings_total",
            "Booking requests by result",
            ["result"],
            registry=registry,
        )
        self.compensations = Counter(
            "bookingguard_compensations_total",
            "Cancellations of Cal.com bookings we could not keep, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "bookingguard_booking_retries_total",
            "Cal.com requests of the booking path retried after a transient failure",
            registry=registry,
        )

    def record_retry(self, _attempt: int, _error: BaseException, _delay: float) -> None:
        """``retry_async``'s ``on_retry`` hook: count one retry."""
        self.retries.inc()


@cache
def default_booking_metrics() -> BookingMetrics:
    """The process-wide metrics, registered once in prometheus_client's default registry."""
    return BookingMetrics(REGISTRY)
