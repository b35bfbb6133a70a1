"""``metrics_view``: under ``serve --workers`` every worker's metrics, summed."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bookingguard.api.server import METRICS_DIR_ENV, metrics_view
from bookingguard.booking import BookingMetrics
from bookingguard.monitoring.metrics import MonitorMetrics


def _worker(bookings: int, review_queue: int) -> None:
    """One worker process: books ``bookings`` times and sets the review queue gauge."""
    registry = CollectorRegistry()
    booking = BookingMetrics(registry)
    for _ in range(bookings):
        booking.bookings.labels(result="booked").inc()
        booking.validation_duration.labels(outcome="success").observe(0.002)
    MonitorMetrics(registry).review_queue_size.set(review_queue)


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_every_worker_counts_and_the_last_gauge_set_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes' counters and histograms add up; a gauge reads as last set."""
    monkeypatch.setenv(METRICS_DIR_ENV, str(tmp_path))
    spawn = multiprocessing.get_context("spawn")
    for bookings, review_queue in ((3, 7), (5, 4)):
        worker = spawn.Process(target=_worker, args=(bookings, review_queue))
        worker.start()
        worker.join(timeout=60)
        assert worker.exitcode == 0
    view = metrics_view(CollectorRegistry())
    assert _sample(view, "bookingguard_bookings_total", result="booked") == 8
    assert _sample(view, "bookingguard_validation_duration_seconds_count", outcome="success") == 8
    assert _sample(view, "bookingguard_review_queue_size") == 4
    assert b"bookingguard_bookings_total" in generate_latest(view)


def test_one_process_reads_its_own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the multiprocess directory the registry itself is what is read."""
    monkeypatch.delenv(METRICS_DIR_ENV, raising=False)
    registry = CollectorRegistry()
    assert metrics_view(registry) is registry
