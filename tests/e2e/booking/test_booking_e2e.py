"""End to end: Retell → bookingguard over HTTP (uvicorn on loopback) → the Cal.com stand-in.

The real circuit breaker over Redis and SQL, the real retry (in testing mode, so
no test sleeps), on both dialects. Nothing is mocked below the HTTP boundary.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from bookingguard.api import create_app
from bookingguard.bootstrap import Services, build_services
from bookingguard.db.models import Appointment, Call, ManualReviewItem
from bookingguard.db.uow import UnitOfWork
from bookingguard.resilience.retry import set_testing
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.support.calcom_standin import CalcomStandin
from tests.support.phantoms import phantom_calls
from tests.support.retell import calcom_headers, function_call_body, retell_headers
from tests.support.server import LoopbackServer

RETELL_KEY = "retell_e2e_key"
CALCOM_SECRET = "whsec_e2e"
BOOK = "/retell/functions/book_appointment"


@dataclass
class Stack:
    url: str
    services: Services
    calcom: CalcomStandin

    def book(self, call_id: str = "call_1", **args: object) -> httpx.Response:
        body = function_call_body(call_id, **args)
        return httpx.post(
            self.url + BOOK, content=body, headers=retell_headers(body, RETELL_KEY), timeout=30
        )

    def call(self, retell_call_id: str = "call_1") -> Call:
        with UnitOfWork(self.services.sessions) as uow:
            return uow.session.scalars(
                select(Call).where(Call.retell_call_id == retell_call_id)
            ).one()

    def appointments(self) -> list[Appointment]:
        with UnitOfWork(self.services.sessions) as uow:
            return list(uow.session.scalars(select(Appointment)))

    def review_items(self) -> list[ManualReviewItem]:
        with UnitOfWork(self.services.sessions) as uow:
            return list(uow.session.scalars(select(ManualReviewItem)))

    def phantoms(self) -> list[str]:
        """Calls claiming a booking with no live appointment behind them."""
        return phantom_calls(self.services.sessions)


@pytest.fixture
def stack(
    database: TestDatabase, calcom_standin: CalcomStandin, redis_url: str, redis_prefix: str
) -> Iterator[Stack]:
    settings = Settings(
        database_url=database.url,
        redis_url=redis_url,
        circuit_breaker={"redis_key_prefix": redis_prefix, "timeout_seconds": 2.0},
        calcom={
            "api_key": calcom_standin.api_key,
            "base_url": calcom_standin.base_url,
            "webhook_secret": CALCOM_SECRET,
            "read_timeout_seconds": 0.5,
        },
        retell={"api_key": RETELL_KEY},
    )
    set_testing(True)
    services = build_services(settings, engine=database.engine)
    try:
        with LoopbackServer(create_app(settings, services=services)) as server:
            yield Stack(server.url, services, calcom_standin)
    finally:
        set_testing(False)


def test_good_booking(stack: Stack) -> None:
    """A signed function call books once in Cal.com and in the database; the call says so."""
    response = stack.book()
    assert response.status_code == 200
    answer = response.json()
    assert answer["booked"] is True
    (appointment,) = stack.appointments()
    assert answer["appointment_id"] == appointment.id
    (booking,) = stack.calcom.bookings()
    assert appointment.calcom_booking_uid == booking["uid"]
    call = stack.call()
    assert (call.appointment_made, call.session_outcome, call.appointment_link_status) == (
        True,
        "appointment_booked",
        "linked",
    )


def test_same_function_call_three_times_books_once(stack: Stack) -> None:
    """Retell's retries of one function call return one appointment and one Cal.com booking."""
    answers = [stack.book().json() for _ in range(3)]
    assert all(answer["booked"] for answer in answers)
    assert len({answer["appointment_id"] for answer in answers}) == 1
    assert stack.calcom.request_count("create") == 1
    assert len(stack.calcom.bookings()) == 1
    assert len(stack.appointments()) == 1


def test_calcom_500_three_times(stack: Stack) -> None:
    """Three 500s: booked false, the call consistent and flagged, a review item, no booking."""
    retries_before = REGISTRY.get_sample_value("bookingguard_booking_retries_total") or 0.0
    stack.calcom.fail_next("create", status=500, times=3)
    response = stack.book()
    assert REGISTRY.get_sample_value("bookingguard_booking_retries_total") == retries_before + 2
    assert response.status_code == 200
    assert response.json()["booked"] is False
    assert stack.calcom.request_count("create") == 3
    assert stack.calcom.bookings() == []
    call = stack.call()
    assert (call.appointment_made, call.session_outcome) == (False, "creation_failed")
    assert call.requires_manual_processing is True
    assert [item.call_id for item in stack.review_items()] == [call.id]
    assert stack.phantoms() == []


def test_lost_response_books_exactly_once(stack: Stack) -> None:
    """Booked but the response was lost: one Cal.com booking after the retry, and booked."""
    stack.calcom.lose_response_next("create")
    answer = stack.book().json()
    assert answer["booked"] is True
    assert len(stack.calcom.bookings()) == 1
    assert stack.calcom.request_count("create") == 1


def test_lost_response_by_timeout_books_exactly_once(stack: Stack) -> None:
    """Booked, then the answer hangs past the read timeout: still exactly one booking."""
    stack.calcom.lose_response_next("create", hang_seconds=3.0)
    answer = stack.book().json()
    assert answer["booked"] is True
    assert len(stack.calcom.bookings()) == 1


def test_open_circuit_answers_fast_without_calling_calcom(stack: Stack) -> None:
    """Three failures open the circuit; the next call is refused fast with no request sent."""
    stack.calcom.fail_next("create", status=503, times=3)
    assert stack.book("call_1").json()["booked"] is False
    sent = len(stack.calcom.requests)
    started = time.monotonic()
    response = stack.book("call_2")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    answer = response.json()
    assert answer["booked"] is False
    assert "call you back" in answer["message"]
    assert len(stack.calcom.requests) == sent
    assert elapsed < 1.0
    assert stack.call("call_2").requires_manual_processing is True


def test_cancel_webhook_leaves_no_phantom(stack: Stack) -> None:
    """A Cal.com cancellation cancels the appointment and the call stops claiming a booking."""
    assert stack.book().json()["booked"] is True
    (booking,) = stack.calcom.bookings()
    stack.calcom.cancel(booking["uid"], "caller cancelled by e-mail")
    body = stack.calcom.webhook_body("BOOKING_CANCELLED", booking["uid"])
    response = httpx.post(
        stack.url + "/webhooks/calcom", content=body, headers=calcom_headers(body, CALCOM_SECRET)
    )
    assert response.status_code == 204
    (appointment,) = stack.appointments()
    assert appointment.status == "cancelled"
    call = stack.call()
    assert (call.appointment_made, call.session_outcome, call.appointment_link_status) == (
        False,
        "appointment_cancelled",
        "unlinked",
    )
    assert stack.phantoms() == []
