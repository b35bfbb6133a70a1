"""Cal.com's booking webhooks keep the appointment and the call consistent, on both dialects.

Every delivery is signed and held to Cal.com's documented payload by ``calcom_headers``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bookingguard.api import create_app
from bookingguard.booking.store import NewClaim
from bookingguard.bootstrap import build_services
from bookingguard.calcom.webhooks import OUR_METADATA_KEYS
from bookingguard.db.models import (
    Appointment,
    Call,
    ConsistencyAlert,
    NotificationOutbox,
    WebhookEvent,
)
from bookingguard.db.uow import UnitOfWork
from bookingguard.monitoring import AlertPolicy, Monitor
from tests.conftest import TestDatabase
from tests.integration.booking.test_api import Api, settings_for
from tests.support.booking_fakes import FakeBreaker, ImmediateRetrier
from tests.support.calcom_standin import CalcomStandin
from tests.support.retell import function_call_body

START = datetime(2026, 12, 4, 9, tzinfo=UTC)
KEY = "bg1-issued-for-call-1"
#: The metadata the booking path writes for the key it claimed for call_1 (``claimed``).
OURS = {OUR_METADATA_KEYS[0]: KEY, OUR_METADATA_KEYS[1]: "call_1"}


@pytest.fixture
async def hooks(database: TestDatabase, calcom_standin: CalcomStandin) -> AsyncIterator[Api]:
    settings = settings_for(database, calcom_standin)
    breaker = FakeBreaker()
    services = build_services(
        settings, breaker=breaker, retrier=ImmediateRetrier(), engine=database.engine
    )
    app = create_app(settings, services=services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as http:
        api = Api(http, services, breaker, calcom_standin)
        await claimed(api, KEY)
        yield api
    await services.calcom.aclose()


async def claimed(api: Api, key: str, retell_call_id: str = "call_1") -> int:
    """The booking path's claim of ``key`` for the call (created): the key it issued."""
    claim = await api.services.booking.store.claim(
        NewClaim(
            retell_call_id=retell_call_id,
            key=key,
            event_type_id=42,
            starts_at=START,
            now=datetime.now(UTC),
        )
    )
    assert claim.won
    return claim.appointment.appointment_id


async def deliver(api: Api, trigger: str, uid: str, **payload: Any) -> httpx.Response:
    """Cal.com's delivery of ``trigger`` for the stand-in's booking ``uid``, fields overridden."""
    document = json.loads(api.calcom.webhook_body(trigger, uid))
    document["triggerEvent"] = trigger
    document["payload"].update(payload)
    response = await api.calcom_event(json.dumps(document).encode())
    assert response.status_code == 204
    return response


async def deliver_no_show(api: Api, uid: str, booking_id: int, *, no_show: bool) -> None:
    """A BOOKING_NO_SHOW_UPDATED delivery: it names the booking ``bookingUid``."""
    document = {
        "triggerEvent": "BOOKING_NO_SHOW_UPDATED",
        "createdAt": datetime.now(UTC).isoformat(),
        "payload": {
            "bookingUid": uid,
            "bookingId": booking_id,
            "message": "x_marked_as_no_show" if no_show else "x_unmarked_as_no_show",
            "attendees": [{"email": "walk-in@example.com", "noShow": no_show}],
        },
    }
    response = await api.calcom_event(json.dumps(document).encode())
    assert response.status_code == 204


def appointments(api: Api) -> list[Appointment]:
    with UnitOfWork(api.services.sessions) as uow:
        return list(uow.session.scalars(select(Appointment).order_by(Appointment.id)))


def external(api: Api) -> list[Appointment]:
    """The appointments stored as made elsewhere (the fixture's claim is not one)."""
    return [a for a in appointments(api) if a.source == "calcom"]


def alerts(api: Api) -> list[ConsistencyAlert]:
    with UnitOfWork(api.services.sessions) as uow:
        return list(uow.session.scalars(select(ConsistencyAlert)))


def outbox(api: Api) -> list[NotificationOutbox]:
    with UnitOfWork(api.services.sessions) as uow:
        return list(uow.session.scalars(select(NotificationOutbox)))


def call_state(api: Api) -> tuple[bool, str | None, str | None]:
    call = api.call()
    return call.appointment_made, call.session_outcome, call.appointment_link_status


async def requested(api: Api, metadata: dict[str, str] | None = OURS) -> dict[str, Any]:
    """A booking awaiting the host's confirmation, delivered as BOOKING_REQUESTED."""
    booking = api.calcom.add_booking(start=START, event_type_id=42, metadata=metadata)
    await deliver(api, "BOOKING_REQUESTED", booking["uid"], status="PENDING")
    return booking


async def test_requested_booking_is_stored_pending_and_links_the_call(hooks: Api) -> None:
    """BOOKING_REQUESTED: a pending appointment for the call named in the metadata."""
    await requested(hooks)
    (appointment,) = appointments(hooks)
    assert (appointment.status, appointment.source) == ("pending", "agent")
    assert appointment.call_id == hooks.call().id
    assert call_state(hooks) == (True, "appointment_booked", "linked")


async def test_confirmed_request_becomes_booked(hooks: Api) -> None:
    """The host confirms (Cal.com sends BOOKING_CREATED, accepted): the appointment is booked."""
    booking = await requested(hooks)
    await deliver(hooks, "BOOKING_CREATED", booking["uid"], status="ACCEPTED")
    assert [a.status for a in appointments(hooks)] == ["booked"]


async def test_rejection_unlinks_the_call_alerts_and_notifies(hooks: Api) -> None:
    """BOOKING_REJECTED: the appointment is rejected, the call no longer booked, and an
    appointment_rejected warning is opened and queued for every channel; once only."""
    booking = await requested(hooks)
    for _ in range(2):
        await deliver(
            hooks, "BOOKING_REJECTED", booking["uid"], status="REJECTED", rejectionReason="full"
        )
    (appointment,) = appointments(hooks)
    assert appointment.status == "rejected"
    assert call_state(hooks) == (False, "appointment_cancelled", "unlinked")
    (alert,) = alerts(hooks)
    assert (alert.alert_type, alert.severity, alert.entity_type, alert.entity_id) == (
        "appointment_rejected",
        "warning",
        "appointment",
        appointment.id,
    )
    assert alert.occurrences == 1
    assert (alert.metadata_ or {}).get("rejection_reason") == "full"
    messages = outbox(hooks)
    assert {m.channel for m in messages} == {"slack", "email", "log"}
    assert all(m.fingerprints == [alert.fingerprint] for m in messages)
    assert all(m.payload["alert_type"] == "appointment_rejected" for m in messages)
    assert hooks.count(WebhookEvent) == 2


async def test_cancellation_redelivered_changes_nothing(hooks: Api) -> None:
    """BOOKING_CANCELLED twice: one cancelled appointment, the call unlinked, one event kept."""
    booking = hooks.calcom.add_booking(start=START, event_type_id=42, metadata=OURS)
    await deliver(hooks, "BOOKING_CREATED", booking["uid"])
    hooks.calcom.cancel(booking["uid"])
    for _ in range(2):
        await deliver(hooks, "BOOKING_CANCELLED", booking["uid"])
    assert [a.status for a in appointments(hooks)] == ["cancelled"]
    assert call_state(hooks) == (False, "appointment_cancelled", "unlinked")
    assert hooks.count(WebhookEvent) == 2
    assert alerts(hooks) == []


async def test_reschedule_keeps_the_call_booked_and_redelivery_changes_nothing(
    hooks: Api,
) -> None:
    """BOOKING_RESCHEDULED twice: the old appointment rescheduled, one new one on the call."""
    old = hooks.calcom.add_booking(start=START, event_type_id=42, metadata=OURS)
    await deliver(hooks, "BOOKING_CREATED", old["uid"])
    new = hooks.calcom.add_booking(
        start=datetime(2026, 12, 5, 10, tzinfo=UTC), event_type_id=42, metadata=OURS
    )
    for _ in range(2):
        await deliver(hooks, "BOOKING_RESCHEDULED", new["uid"], rescheduleUid=old["uid"])
    moved, current = appointments(hooks)
    assert (moved.status, current.status) == ("rescheduled", "booked")
    assert moved.call_id == current.call_id == hooks.call().id
    assert call_state(hooks) == (True, "appointment_booked", "linked")


async def test_rescheduling_the_only_live_appointment_away_unlinks(hooks: Api) -> None:
    """Once the new booking is cancelled too, the call has no live appointment left."""
    old = hooks.calcom.add_booking(start=START, event_type_id=42, metadata=OURS)
    await deliver(hooks, "BOOKING_CREATED", old["uid"])
    new = hooks.calcom.add_booking(
        start=datetime(2026, 12, 5, 10, tzinfo=UTC), event_type_id=42, metadata=OURS
    )
    await deliver(hooks, "BOOKING_RESCHEDULED", new["uid"], rescheduleUid=old["uid"])
    await deliver(hooks, "BOOKING_CANCELLED", new["uid"])
    assert [a.status for a in appointments(hooks)] == ["rescheduled", "cancelled"]
    assert call_state(hooks) == (False, "appointment_cancelled", "unlinked")


async def test_no_show_is_marked_and_unmarked(hooks: Api) -> None:
    """BOOKING_NO_SHOW_UPDATED: no_show while marked, booked again when unmarked; the call
    stays booked (the slot was held)."""
    booking = hooks.calcom.add_booking(start=START, event_type_id=42, metadata=OURS)
    await deliver(hooks, "BOOKING_CREATED", booking["uid"])
    await deliver_no_show(hooks, booking["uid"], booking["id"], no_show=True)
    await deliver_no_show(hooks, booking["uid"], booking["id"], no_show=True)
    assert [a.status for a in appointments(hooks)] == ["no_show"]
    assert call_state(hooks) == (True, "appointment_booked", "linked")
    await deliver_no_show(hooks, booking["uid"], booking["id"], no_show=False)
    assert [a.status for a in appointments(hooks)] == ["booked"]


async def test_external_booking_is_data_not_an_alarm(hooks: Api) -> None:
    """A web booking (no metadata of ours), requested then rejected: a calcom appointment with
    no call, no alert, no notification; the monitor finds no orphan in it."""
    booking = await requested(hooks, metadata=None)
    (appointment,) = external(hooks)
    assert (appointment.source, appointment.call_id, appointment.status) == (
        "calcom",
        None,
        "pending",
    )
    monitor = Monitor(
        hooks.services.sessions, policy=AlertPolicy(), clock=lambda: datetime.now(UTC)
    )
    report = monitor.check(scan_all=True, fix=False, notify=False)
    assert report.outcomes["orphaned_appointment"].count == 0
    await deliver(hooks, "BOOKING_REJECTED", booking["uid"], status="REJECTED")
    assert [a.status for a in external(hooks)] == ["rejected"]
    assert alerts(hooks) == []
    assert outbox(hooks) == []


async def test_booking_claiming_our_metadata_that_matches_nothing_is_an_alert(
    hooks: Api,
) -> None:
    """A key we never issued, naming no call: an external booking and a warning, no call."""
    booking = hooks.calcom.add_booking(
        start=START, event_type_id=42, metadata={OUR_METADATA_KEYS[0]: "call_9:slot"}
    )
    await deliver(hooks, "BOOKING_CREATED", booking["uid"])
    (alert,) = alerts(hooks)
    (claim, external) = appointments(hooks)
    assert (alert.alert_type, alert.severity, alert.entity_id) == (
        "unverified_booking_metadata",
        "warning",
        external.id,
    )
    assert (external.source, external.call_id, external.calcom_booking_uid) == (
        "calcom",
        None,
        booking["uid"],
    )
    assert (claim.status, claim.calcom_booking_uid) == ("pending_creation", None)
    assert hooks.count(Call) == 1


async def test_forged_metadata_never_books_a_failed_call(hooks: Api) -> None:
    """A booking page's pre-filled metadata names a call whose booking failed (and a key we
    never issued): the call stays failed and unbooked, the booking is stored as external,
    and a warning names the call; a call id we do not know creates no call row."""
    hooks.calcom.fail_next("create", status=400)
    response = await hooks.book(function_call_body())
    assert response.json()["booked"] is False
    before = hooks.call()
    assert (before.booking_failed, before.appointment_made) == (True, False)
    forged = hooks.calcom.add_booking(
        start=datetime(2026, 12, 4, 11, tzinfo=UTC),
        event_type_id=42,
        metadata={OUR_METADATA_KEYS[0]: "bg1-forged", OUR_METADATA_KEYS[1]: "call_1"},
    )
    await deliver(hooks, "BOOKING_CREATED", forged["uid"])
    stranger = hooks.calcom.add_booking(
        start=datetime(2026, 12, 4, 10, tzinfo=UTC),
        event_type_id=42,
        metadata={OUR_METADATA_KEYS[1]: "call_unknown"},
    )
    await deliver(hooks, "BOOKING_CREATED", stranger["uid"])
    after = hooks.call()
    assert (after.booking_failed, after.appointment_made, after.session_outcome) == (
        True,
        False,
        before.session_outcome,
    )
    assert after.appointment_link_status == before.appointment_link_status
    assert hooks.count(Call) == 1
    stored = {a.calcom_booking_uid: (a.source, a.call_id) for a in appointments(hooks)}
    assert stored[forged["uid"]] == stored[stranger["uid"]] == ("calcom", None)
    named = {
        (alert.metadata_ or {}).get("calcom_booking_uid"): (
            alert.alert_type,
            (alert.metadata_ or {}).get("named_call_id"),
        )
        for alert in alerts(hooks)
    }
    assert named == {
        forged["uid"]: ("unverified_booking_metadata", after.id),
        stranger["uid"]: ("unverified_booking_metadata", None),
    }


async def test_the_issued_key_attaches_the_booking_to_its_claim(hooks: Api) -> None:
    """A booking carrying the key we issued fills that claim (a crashed owner's, say): the
    call is linked and booked by it, no longer a failed booking; no alert."""
    with UnitOfWork(hooks.services.sessions) as uow:
        call = uow.session.scalars(select(Call).where(Call.retell_call_id == "call_1")).one()
        call.booking_failed = True
        call.booking_failure_reason = "calcom_unavailable"
        uow.commit()
    booking = hooks.calcom.add_booking(start=START, event_type_id=42, metadata=OURS)
    await deliver(hooks, "BOOKING_CREATED", booking["uid"])
    (appointment,) = appointments(hooks)
    assert (appointment.status, appointment.idempotency_key, appointment.source) == (
        "booked",
        KEY,
        "agent",
    )
    assert (appointment.calcom_booking_uid, appointment.calcom_v2_booking_id) == (
        booking["uid"],
        booking["id"],
    )
    assert call_state(hooks) == (True, "appointment_booked", "linked")
    assert (hooks.call().booking_failed, hooks.call().booking_failure_reason) == (False, None)
    assert alerts(hooks) == []


async def test_a_cancellation_of_the_claims_booking_closes_the_claim(hooks: Api) -> None:
    """The claim's booking cancelled before its creation reached us: the claim is closed as
    cancelled with the booking (the key has had its create); the call is not booked."""
    booking = hooks.calcom.add_booking(start=START, event_type_id=42, metadata=OURS)
    hooks.calcom.cancel(booking["uid"])
    await deliver(hooks, "BOOKING_CANCELLED", booking["uid"])
    (appointment,) = appointments(hooks)
    assert (appointment.status, appointment.calcom_booking_uid, appointment.idempotency_key) == (
        "cancelled",
        booking["uid"],
        KEY,
    )
    assert call_state(hooks)[0] is False
    assert alerts(hooks) == []


async def test_our_metadata_keys_are_the_ones_the_booking_path_writes(hooks: Api) -> None:
    """A booking made through our function carries every key that makes a booking ours."""
    response = await hooks.book(function_call_body())
    assert response.json()["booked"] is True
    (booking,) = hooks.calcom.bookings()
    assert set(OUR_METADATA_KEYS) <= set(booking["metadata"])
