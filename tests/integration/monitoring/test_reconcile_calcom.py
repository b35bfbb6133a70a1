"""Reconciliation through the real Cal.com client against the Cal.com stand-in, both dialects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from bookingguard.bootstrap import build_monitoring
from bookingguard.cli.app import app
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.integration.monitoring.helpers import add_appointment, add_call
from tests.support.calcom_standin import CalcomStandin

START = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=2)


@pytest.fixture
def calcom() -> Iterator[CalcomStandin]:
    """The Cal.com stand-in on loopback."""
    with CalcomStandin() as standin:
        yield standin


def settings_for(database: TestDatabase, calcom: CalcomStandin) -> Settings:
    return Settings(
        database_url=database.url,
        calcom={"base_url": calcom.base_url, "api_key": calcom.api_key},
        monitoring={"reconcile_grace_minutes": 0},
    )


def local_copy(database: TestDatabase, booking: dict[str, Any], key: str) -> int:
    """A local call and appointment mirroring a Cal.com booking."""
    start = datetime.fromisoformat(booking["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(booking["end"].replace("Z", "+00:00"))
    created = datetime.now(UTC) - timedelta(hours=1)
    with database.engine.begin() as connection:
        call_id = add_call(connection, key, created_at=created)
        return add_appointment(
            connection,
            call_id,
            calcom_booking_uid=booking["uid"],
            starts_at=start,
            ends_at=end,
            created_at=created,
        )


async def test_quiet_window_needs_one_list_request(
    database: TestDatabase, calcom: CalcomStandin
) -> None:
    """Bookings that agree cost a single listing request and no lookups."""
    for hour in range(3):
        booking = calcom.add_booking(start=START + timedelta(hours=hour), event_type_id=7)
        local_copy(database, booking, f"c{hour}")
    service = build_monitoring(settings_for(database, calcom), database.engine)
    report = await service.reconcile_calcom(notify=False)
    assert report.findings == {}
    assert calcom.request_count("list") == 1
    assert calcom.request_count("get") == 0


async def test_phantom_cancelled_and_unknown_bookings_become_alerts(
    database: TestDatabase, calcom: CalcomStandin
) -> None:
    """Missing and cancelled at Cal.com are critical; a Cal.com-only booking with our
    metadata is unknown, one made elsewhere is not."""
    kept = calcom.add_booking(start=START, event_type_id=7)
    local_copy(database, kept, "kept")
    cancelled = calcom.add_booking(start=START + timedelta(hours=1), event_type_id=7)
    cancelled_id = local_copy(database, cancelled, "cancelled")
    calcom.cancel(cancelled["uid"])
    walk_in = calcom.add_booking(
        start=START + timedelta(hours=2), event_type_id=7, metadata={"retell_call_id": "call_9"}
    )
    calcom.add_booking(start=START + timedelta(hours=3), event_type_id=7)
    phantom_id = local_copy(
        database,
        {**kept, "uid": "never-booked", "start": walk_in["end"], "end": walk_in["end"]},
        "phantom",
    )
    service = build_monitoring(settings_for(database, calcom), database.engine)
    report = await service.reconcile_calcom(notify=False)
    document = report.to_dict()["findings"]
    missing = {s["entity_id"]: s["reason"] for s in document["calcom_booking_missing"]["samples"]}
    assert missing == {cancelled_id: "cancelled_at_calcom", phantom_id: "missing"}
    assert document["unknown_calcom_booking"]["samples"] == [
        {"entity_type": "calcom_booking", "entity_id": walk_in["id"]}
    ]
    assert calcom.request_count("get") == 1


def test_reconcile_command_exits_2_on_a_phantom(
    database: TestDatabase, calcom: CalcomStandin
) -> None:
    """bookingguard reconcile --json reports the phantom and exits 2."""
    booking = calcom.add_booking(
        start=START, event_type_id=7, metadata={"bookingguard_idempotency_key": "call_9:k"}
    )
    local_copy(database, {**booking, "uid": "gone"}, "gone")
    env = {
        "BOOKINGGUARD_DATABASE_URL": database.url,
        "BOOKINGGUARD_CALCOM__BASE_URL": calcom.base_url,
        "BOOKINGGUARD_CALCOM__API_KEY": calcom.api_key,
        "BOOKINGGUARD_MONITORING__RECONCILE_GRACE_MINUTES": "0",
    }
    result = CliRunner().invoke(app, ["reconcile", "--json", "--no-notify"], env=env)
    assert result.exit_code == 2, result.output
    findings = json.loads(result.stdout)["findings"]
    assert findings["calcom_booking_missing"]["count"] == 1
    assert findings["unknown_calcom_booking"]["count"] == 1
