"""The dashboard's read models: day buckets, validation quantiles from metrics, timelines."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from bookingguard.api.dashboard import queries
from bookingguard.db.alerts import record_alert
from bookingguard.db.models import Call, CircuitBreakerState, CircuitBreakerTransition
from bookingguard.db.uow import UnitOfWork
from tests.conftest import TestDatabase
from tests.operator_support import NOW


def test_day_rates_bucket_calls_by_utc_day(database: TestDatabase) -> None:
    """Calls land in their UTC day; a call with a critical alert lowers that day's rate."""
    midnight = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    times = [midnight + timedelta(seconds=1), midnight - timedelta(seconds=1), NOW]
    with UnitOfWork(database.sessions) as uow:
        calls = [Call(retell_call_id=f"d{i}", created_at=t) for i, t in enumerate(times)]
        uow.session.add_all(calls)
        uow.session.flush()
        record_alert(
            uow.session,
            alert_type="missing_appointment",
            entity_type="call",
            entity_id=calls[0].id,
            description="phantom",
            now=NOW,
        )
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        days = queries.day_rates(uow.session, now=NOW)
    assert len(days) == 14
    assert days[-1].day == NOW.date()
    assert (days[-1].calls, days[-1].inconsistent, days[-1].rate) == (2, 1, 50.0)
    assert (days[-2].calls, days[-2].inconsistent, days[-2].rate) == (1, 0, 100.0)
    assert days[0].rate is None


def test_validation_quantiles_come_from_the_metrics(database: TestDatabase) -> None:
    """p50/p95 follow histogram_quantile over the registry's buckets; failures sum by reason."""
    registry = CollectorRegistry()
    duration = Histogram(
        "bookingguard_validation_duration_seconds",
        "d",
        ["outcome"],
        buckets=(0.01, 0.05, 0.1, 0.5, 1.0),
        registry=registry,
    )
    failures = Counter("bookingguard_validation_failures", "f", ["reason"], registry=registry)
    for _ in range(90):
        duration.labels("success").observe(0.02)
    for _ in range(10):
        duration.labels("failure").observe(0.3)
    failures.labels("appointment_not_found").inc(10)
    with UnitOfWork(database.sessions) as uow:
        view = queries.validation(uow.session, registry, now=NOW)
    assert view.samples == 100
    assert view.p50 == pytest.approx(0.01 + 0.04 * (50 / 90))
    assert view.p95 == pytest.approx(0.1 + 0.4 * 0.5)
    assert view.failures_by_reason == {"appointment_not_found": 10.0}
    assert view.outcomes == {"success": 90.0, "failure": 10.0}


def test_breaker_timeline_covers_the_window(database: TestDatabase) -> None:
    """Segments follow the transitions, span 100 % of the window, and short outages show."""
    key = "appointment_booking:event_type:7"
    opened = NOW - timedelta(days=7)
    with UnitOfWork(database.sessions) as uow:
        uow.session.add(CircuitBreakerState(circuit_key=key, state="closed", version=2))
        uow.session.add_all(
            [
                CircuitBreakerTransition(
                    circuit_key=key,
                    from_state="closed",
                    to_state="open",
                    reason="failure_threshold",
                    at=opened,
                    version=1,
                ),
                CircuitBreakerTransition(
                    circuit_key=key,
                    from_state="open",
                    to_state="closed",
                    reason="reset",
                    at=opened + timedelta(seconds=60),
                    version=2,
                ),
            ]
        )
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        (view,) = queries.breakers(uow.session, now=NOW)
    assert [segment.state for segment in view.segments] == ["closed", "open", "closed"]
    assert view.segments[0].width == pytest.approx(50.0)
    assert view.segments[1].width == queries.MIN_VISIBLE_WIDTH
    assert [t.to_state for t in view.transitions] == ["closed", "open"]
