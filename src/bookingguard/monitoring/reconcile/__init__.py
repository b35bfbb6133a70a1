"""Reconciliation with Cal.com: local appointments against Cal.com bookings in a window.

As data-diff does, both sides are summarised per time bucket (count and a hash of
uid, start and live/cancelled status); only buckets whose summaries differ are
compared row by row, and only uids missing from Cal.com's listing are looked up
one by one. A quiet day therefore costs the listing pages and nothing more.
Bookings younger than the grace period are in flight and left alone.

``ports`` says what reconciliation needs of Cal.com, ``diff`` how the two sides are
compared, ``service`` runs a reconciliation and stores its findings. An in-memory
``BookingSource`` for tests is ``bookingguard.testing.reconcile.InMemoryBookingSource``.
"""

from __future__ import annotations

from bookingguard.monitoring.reconcile.ports import (
    BookingLister,
    BookingSource,
    ClientBookingSource,
    RemoteBooking,
)
from bookingguard.monitoring.reconcile.service import Reconciler, ReconcileReport

__all__ = [
    "BookingLister",
    "BookingSource",
    "ClientBookingSource",
    "ReconcileReport",
    "Reconciler",
    "RemoteBooking",
]
