"""End to end, the agent's whole conversation: availability → book → reschedule → cancel.

Retell → bookingguard over HTTP (uvicorn on loopback) → the Cal.com stand-in, which
enforces each event type and validates every request against the published spec;
the real breaker over Redis and SQL, on both dialects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bookingguard.api import create_app
from bookingguard.bootstrap import Services, build_services
from bookingguard.db.models import (
    Appointment,
    Call,
    ConsistencyAlert,
    NotificationOutbox,
)
from bookingguard.db.uow import UnitOfWork
from bookingguard.resilience.retry import set_testing
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.support.calcom_standin import CalcomStandin
from tests.support.phantoms import phantom_calls
from tests.support.retell import BOOKING_ARGS, calcom_headers, function_body, retell_headers
from tests.support.server import LoopbackServer

RETELL_KEY = "retell_e2e_key"
CALCOM_SECRET = "calcom_e2e_secret"
BERLIN = "Europe/Berlin"
EVENT_TYPE = 42


@dataclass
class Conversation:
    url: str
    services: Services
    calcom: CalcomStandin

    def say(self, function: str, **args: Any) -> dict[str, Any]:
        body = function_body(function, args)
        response = httpx.post(
            f"{self.url}/retell/functions/{function}",
            content=body,
            headers=retell_headers(body, RETELL_KEY),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def calcom_delivers(self, trigger: str, uid: str) -> None:
        """Cal.com's signed webhook delivery of ``trigger`` for its booking ``uid``."""
        body = self.calcom.webhook_body(trigger, uid)
        response = httpx.post(
            f"{self.url}/webhooks/calcom",
            content=body,
            headers=calcom_headers(body, CALCOM_SECRET),
            timeout=30,
        )
        assert response.status_code == 204, response.text

    def host_declines(self, uid: str, reason: str) -> None:
        """The host declines the request through Cal.com's API, as its UI does."""
        response = httpx.post(
            f"{self.calcom.base_url}/bookings/{uid}/decline",
            json={"reason": reason},
            headers={
                "Authorization": f"Bearer {self.calcom.api_key}",
                "cal-api-version": "2024-08-13",
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text

    def alerts(self) -> list[tuple[str, str]]:
        with UnitOfWork(self.services.sessions) as uow:
            rows = uow.session.execute(
                select(ConsistencyAlert.alert_type, ConsistencyAlert.status)
            ).all()
            return [(row[0], row[1]) for row in rows]

    def notified(self) -> set[tuple[str, object]]:
        with UnitOfWork(self.services.sessions) as uow:
            messages = uow.session.scalars(select(NotificationOutbox)).all()
            return {(m.channel, m.payload.get("alert_type")) for m in messages}

    def statuses(self) -> list[str]:
        with UnitOfWork(self.services.sessions) as uow:
            return list(uow.session.scalars(select(Appointment.status).order_by(Appointment.id)))

    def phantoms(self) -> list[str]:
        """Calls claiming a booking with no live appointment behind them."""
        return phantom_calls(self.services.sessions)

    def flags(self) -> tuple[bool, str | None, str | None]:
        with UnitOfWork(self.services.sessions) as uow:
            call = uow.session.scalars(select(Call).where(Call.retell_call_id == "call_1")).one()
            return (call.appointment_made, call.session_outcome, call.appointment_link_status)


@pytest.fixture
def conversation(
    database: TestDatabase, calcom_standin: CalcomStandin, redis_url: str, redis_prefix: str
) -> Iterator[Conversation]:
    settings = Settings(
        database_url=database.url,
        redis_url=redis_url,
        circuit_breaker={"redis_key_prefix": redis_prefix, "timeout_seconds": 2.0},
        calcom={
            "api_key": calcom_standin.api_key,
            "base_url": calcom_standin.base_url,
            "webhook_secret": CALCOM_SECRET,
        },
        retell={"api_key": RETELL_KEY, "agent_event_types": {"agent_1": [EVENT_TYPE]}},
    )
    set_testing(True)
    services = build_services(settings, engine=database.engine)
    try:
        with LoopbackServer(create_app(settings, services=services)) as server:
            yield Conversation(server.url, services, calcom_standin)
    finally:
        set_testing(False)


@pytest.mark.parametrize(
    ("event_type", "pending"),
    [
        pytest.param({"required_fields": ("company",)}, False, id="required-field"),
        pytest.param({"locations": ({"type": "attendeePhone"},)}, False, id="attendee-phone"),
        pytest.param({"requires_confirmation": True}, True, id="requires-confirmation"),
    ],
)
def test_availability_book_reschedule_cancel(
    conversation: Conversation, event_type: dict[str, Any], pending: bool
) -> None:
    """The whole conversation keeps Cal.com, the appointments and the call consistent."""
    conversation.calcom.add_event_type(EVENT_TYPE, **event_type)
    offered = conversation.say("check_availability", time_zone=BERLIN, after="2037-12-08")
    assert offered["available"] is True
    first, second = offered["slots"][:2]

    args = BOOKING_ARGS | {"event_type_id": None, "start": first}
    booked = conversation.say("book_appointment", **args)
    if booked["missing"]:
        assert booked["missing"] == ["company"]
        booked = conversation.say("book_appointment", **args, responses={"company": "ACME"})
    assert (booked["booked"], booked["pending"]) == (not pending, pending)
    assert conversation.statuses() == ["pending" if pending else "booked"]
    assert conversation.flags() == (True, "appointment_booked", "linked")

    moved = conversation.say("reschedule_appointment", start=second, time_zone=BERLIN)
    assert moved["rescheduled"] is True
    assert conversation.statuses()[0] == "rescheduled"
    assert conversation.flags() == (True, "appointment_booked", "linked")

    cancelled = conversation.say("cancel_appointment", time_zone=BERLIN)
    assert cancelled["cancelled"] is True
    assert conversation.statuses() == ["rescheduled", "cancelled"]
    # The moved appointment no longer holds a slot: with the new one cancelled, the call
    # has no live appointment and is unlinked, its outcome off "booked".
    assert conversation.flags() == (False, "appointment_cancelled", "unlinked")
    assert conversation.phantoms() == []
    assert conversation.calcom.bookings(include_cancelled=False) == []
    assert conversation.calcom.violations == []


def test_requested_then_rejected_by_the_host(conversation: Conversation) -> None:
    """An event type that requires confirmation: the caller hears "requested", Cal.com
    announces the request, the host declines it, and Cal.com's BOOKING_REJECTED leaves the
    appointment rejected, the call unlinked, and a warning opened and notified."""
    conversation.calcom.add_event_type(EVENT_TYPE, requires_confirmation=True)
    offered = conversation.say("check_availability", time_zone=BERLIN, after="2037-12-08")
    booked = conversation.say(
        "book_appointment", **BOOKING_ARGS | {"event_type_id": None, "start": offered["slots"][0]}
    )
    assert (booked["booked"], booked["pending"]) == (False, True)
    assert "confirm" in booked["message"]
    (uid,) = [b["uid"] for b in conversation.calcom.bookings()]

    conversation.calcom_delivers("BOOKING_REQUESTED", uid)
    assert conversation.statuses() == ["pending"]
    assert conversation.flags() == (True, "appointment_booked", "linked")

    conversation.host_declines(uid, "fully booked that day")
    conversation.calcom_delivers("BOOKING_REJECTED", uid)
    assert conversation.statuses() == ["rejected"]
    assert conversation.flags() == (False, "appointment_cancelled", "unlinked")
    assert conversation.phantoms() == []
    assert conversation.alerts() == [("appointment_rejected", "open")]
    assert conversation.notified() == {
        (channel, "appointment_rejected") for channel in ("slack", "email", "log")
    }
    # Asked about it later, the agent finds nothing live to move.
    moved = conversation.say("reschedule_appointment", start=offered["slots"][1], time_zone=BERLIN)
    assert moved["rescheduled"] is False
    assert conversation.calcom.violations == []
