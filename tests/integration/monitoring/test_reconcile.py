"""Reconciliation against Cal.com's bookings: phantom, unknown, mismatch, grace, bucket economy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bookingguard.monitoring.reconcile import Reconciler
from bookingguard.testing.reconcile import InMemoryBookingSource
from tests.conftest import TestDatabase
from tests.integration.monitoring.helpers import (
    NOW,
    Clock,
    add_appointment,
    add_call,
    rows,
    scalar,
)

SINCE = NOW - timedelta(days=1)
UNTIL = NOW + timedelta(days=7)


def local_booking(
    database: TestDatabase, uid: str, start_hours: float, *, created_ago: timedelta | None = None
) -> int:
    created = NOW - (created_ago or timedelta(hours=2))
    with database.engine.begin() as connection:
        call_id = add_call(
            connection,
            f"call-{uid}",
            appointment_made=True,
            session_outcome="appointment_booked",
            appointment_link_status="linked",
            created_at=created,
        )
        return add_appointment(
            connection,
            call_id,
            calcom_booking_uid=uid,
            starts_at=NOW + timedelta(hours=start_hours),
            created_at=created,
        )


def reconciler(database: TestDatabase, source: InMemoryBookingSource) -> Reconciler:
    return Reconciler(database.sessions, source, clock=Clock(), grace=timedelta(minutes=10))


@pytest.fixture
def quiet(database: TestDatabase) -> tuple[TestDatabase, InMemoryBookingSource]:
    """Thirty bookings that agree on both sides."""
    source = InMemoryBookingSource()
    for index in range(30):
        uid = f"u{index}"
        local_booking(database, uid, start_hours=index * 3)
        source.add(id=1000 + index, uid=uid, start=NOW + timedelta(hours=index * 3))
    return database, source


async def test_quiet_window_costs_only_the_listing(
    quiet: tuple[TestDatabase, InMemoryBookingSource],
) -> None:
    """When both sides agree, no bucket differs and no booking is fetched one by one."""
    database, source = quiet
    report = await reconciler(database, source).reconcile(since=SINCE, until=UNTIL)
    assert report.findings == {}
    assert report.buckets_differing == 0
    assert source.requests == 1


async def test_phantom_unknown_and_mismatch_are_found_and_stored(
    quiet: tuple[TestDatabase, InMemoryBookingSource],
) -> None:
    """Missing and cancelled at Cal.com, ours but unknown locally, and a moved start each
    become alerts; a booking made elsewhere (no metadata of ours) does not."""
    database, source = quiet
    gone = local_booking(database, "gone", start_hours=5)
    del source.bookings["u1"]
    source.add(id=1001, uid="u1", start=NOW + timedelta(hours=3), status="cancelled")
    source.add(
        id=5000,
        uid="lost",
        start=NOW + timedelta(hours=7),
        metadata={"bookingguard_idempotency_key": "call_9:k"},
    )
    source.add(id=5001, uid="walk-in", start=NOW + timedelta(hours=8))
    source.add(id=1002, uid="u2", start=NOW + timedelta(hours=6, minutes=30))
    report = await reconciler(database, source).reconcile(since=SINCE, until=UNTIL)
    found = report.to_dict()["findings"]
    assert found["calcom_booking_missing"]["count"] == 2
    assert {s["entity_id"] for s in found["calcom_booking_missing"]["samples"]} >= {gone}
    assert found["unknown_calcom_booking"]["samples"] == [
        {"entity_type": "calcom_booking", "entity_id": 5000}
    ]
    assert found["calcom_booking_mismatch"]["samples"][0]["difference"] == "start"
    assert report.buckets_differing < report.buckets
    assert (
        scalar(
            database,
            "SELECT count(*) FROM data_consistency_alerts WHERE status = 'open'"
            " AND alert_type IN ('calcom_booking_missing', 'unknown_calcom_booking',"
            " 'calcom_booking_mismatch')",
        )
        == 4
    )
    assert scalar(database, "SELECT count(*) FROM manual_review_queue") == 2


async def test_in_flight_bookings_are_left_alone(database: TestDatabase) -> None:
    """A local booking made two minutes ago and not yet listed by Cal.com is not a phantom."""
    source = InMemoryBookingSource()
    local_booking(database, "fresh", start_hours=4, created_ago=timedelta(minutes=2))
    source.add(
        id=9,
        uid="fresh-remote",
        start=NOW + timedelta(hours=5),
        created_at=NOW - timedelta(minutes=1),
    )
    report = await reconciler(database, source).reconcile(since=SINCE, until=UNTIL)
    assert report.findings == {}


async def test_fixed_difference_resolves_its_alert(database: TestDatabase) -> None:
    """Once Cal.com has the booking again, the next reconciliation resolves the alert."""
    source = InMemoryBookingSource()
    local_booking(database, "x", start_hours=2)
    first = await reconciler(database, source).reconcile(since=SINCE, until=UNTIL)
    assert "calcom_booking_missing" in first.findings
    source.add(id=77, uid="x", start=NOW + timedelta(hours=2))
    second = await reconciler(database, source).reconcile(since=SINCE, until=UNTIL)
    assert second.findings == {}
    assert [o.resolved for o in second.outcomes if o.alert_type == "calcom_booking_missing"] == [
        ("calcom_booking_missing:appointment:1",)
    ]


async def test_service_reconcile_keeps_a_run_and_queues_the_phantom(database: TestDatabase) -> None:
    """Through the service, reconciliation is kept in check_runs and notifies like a rule."""
    from bookingguard.monitoring.service import MonitoringService
    from bookingguard.settings import Settings

    local_booking(database, "x", start_hours=2)
    service = MonitoringService(
        database.sessions, Settings(database_url=database.url), clock=Clock()
    )
    await service.reconcile(InMemoryBookingSource())
    trigger, results = rows(database, "SELECT trigger, results FROM check_runs")[0]
    assert trigger == "reconcile"
    assert "calcom_booking_missing" in str(results)
    assert (
        scalar(
            database,
            "SELECT count(*) FROM notification_outbox"
            " WHERE subject LIKE '%calcom_booking_missing%'",
        )
        == 1
    )
