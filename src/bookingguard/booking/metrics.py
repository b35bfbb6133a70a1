"""Prometheus metrics of the booking path, built from ``metrics_catalog`` (bounded labels)."""

from __future__ import annotations

from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry

from bookingguard.metrics_catalog import counter, gauge, histogram

__all__ = ["BookingMetrics", "default_booking_metrics"]


class BookingMetrics:
    """Validation duration and failures, rollbacks, bookings by outcome, claims settled,
    compensations, retries, and the spool's backlog of failure records."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.validation_duration = histogram("bookingguard_validation_duration_seconds", registry)
        self.validation_failures = counter("bookingguard_validation_failures_total", registry)
        self.rollbacks = counter("bookingguard_rollbacks_total", registry)
        self.bookings = counter("bookingguard_bookings_total", registry)
        self.claims_settled = counter("bookingguard_claims_settled_total", registry)
        self.compensations = counter("bookingguard_compensations_total", registry)
        self.retries = counter("bookingguard_booking_retries_total", registry)
        self.spool_backlog = gauge("bookingguard_spool_backlog", registry)

    def record_retry(self, _attempt: int, _error: BaseException, _delay: float) -> None:
        """``retry_async``'s ``on_retry`` hook: count one retry."""
        self.retries.inc()


@cache
def default_booking_metrics() -> BookingMetrics:
    """The process-wide metrics, registered once in prometheus_client's default registry."""
    return BookingMetrics(REGISTRY)
