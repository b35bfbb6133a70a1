"""The agent's functions in-process (ASGI), on both dialects, against the Cal.com stand-in:
availability, booking with event types, pending, reschedule, cancel, args_at_root, and the
event type chosen by configuration."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bookingguard.api import create_app
from bookingguard.bootstrap import Services, build_services
from bookingguard.db.models import Appointment, Call, ManualReviewItem
from bookingguard.db.uow import UnitOfWork
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.support.booking_fakes import FakeBreaker, ImmediateRetrier
from tests.support.calcom_standin import CalcomStandin
from tests.support.retell import BOOKING_ARGS, function_body, retell_headers

RETELL_KEY = "retell_test_key"
FUNCTIONS = "/retell/functions"
BERLIN = "Europe/Berlin"


@dataclass
class Agent:
    """The service as the Retell agent sees it, and what it stored."""

    http: httpx.AsyncClient
    services: Services
    calcom: CalcomStandin
    breaker: FakeBreaker

    async def post(self, path: str, body: bytes) -> dict[str, Any]:
        response = await self.http.post(
            f"{FUNCTIONS}/{path}", content=body, headers=retell_headers(body, RETELL_KEY)
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def call(self, function: str, path: str | None = None, /, **args: Any) -> dict[str, Any]:
        """Retell's full body for ``function`` (at ``path``, e.g. with a query)."""
        return await self.post(path or function, function_body(function, args))

    async def book(self, **args: Any) -> dict[str, Any]:
        return await self.call("book_appointment", **(BOOKING_ARGS | args))

    def appointments(self) -> list[tuple[int, str, int | None]]:
        """(id, status, event type) of every appointment, oldest first."""
        with UnitOfWork(self.services.sessions) as uow:
            rows = uow.session.execute(
                select(Appointment.id, Appointment.status, Appointment.event_type_id).order_by(
                    Appointment.id
                )
            ).all()
        return [(row[0], row[1], row[2]) for row in rows]

    def flags(self, retell_call_id: str = "call_1") -> tuple[bool, str | None, str | None]:
        with UnitOfWork(self.services.sessions) as uow:
            call = uow.session.scalars(
                select(Call).where(Call.retell_call_id == retell_call_id)
            ).one()
            return (call.appointment_made, call.session_outcome, call.appointment_link_status)

    def reviews(self) -> list[tuple[str, dict[str, Any]]]:
        """(reason, context) of every review item, with the call's manual-processing flag
        checked on the way: a review item always comes with it."""
        with UnitOfWork(self.services.sessions) as uow:
            items = uow.session.scalars(select(ManualReviewItem).order_by(ManualReviewItem.id))
            found = [(item.reason, dict(item.context or {})) for item in items]
            flagged = uow.session.scalars(select(Call.requires_manual_processing)).all()
        assert all(flagged) or not found
        return found


AgentFactory = Callable[..., Any]


@pytest.fixture
async def make_agent(
    database: TestDatabase, calcom_standin: CalcomStandin
) -> AsyncIterator[Callable[..., Any]]:
    """Builds the agent's view of a service configured with ``retell`` settings."""
    opened: list[tuple[httpx.AsyncClient, Services]] = []

    async def make(**retell: Any) -> Agent:
        settings = Settings(
            database_url=database.url,
            calcom={"api_key": calcom_standin.api_key, "base_url": calcom_standin.base_url},
            retell={"api_key": RETELL_KEY, **retell},
        )
        breaker = FakeBreaker()
        services = build_services(
            settings, breaker=breaker, retrier=ImmediateRetrier(), engine=database.engine
        )
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, services=services)),
            base_url="http://api",
        )
        opened.append((http, services))
        return Agent(http, services, calcom_standin, breaker)

    yield make
    for http, services in opened:
        await http.aclose()
        await services.calcom.aclose()


@pytest.fixture
async def agent(make_agent: Callable[..., Any]) -> Agent:
    built: Agent = await make_agent()
    return built


async def test_availability_speaks_the_first_three_free_slots(agent: Agent) -> None:
    """check_availability offers the first three free slots, in the caller's zone, in words."""
    answer = await agent.call(
        "check_availability", event_type_id=42, time_zone=BERLIN, after="2037-12-08T00:00:00"
    )
    assert answer["available"] is True
    assert answer["slots"] == [
        "2037-12-08T10:00:00+01:00",
        "2037-12-08T10:30:00+01:00",
        "2037-12-08T11:00:00+01:00",
    ]
    assert answer["message"] == (
        "I have Tuesday 8 December at 10:00, 10:30 or 11:00. Which would suit you?"
    )
    assert agent.calcom.request_count("slots") == 1


async def test_availability_skips_taken_slots(agent: Agent) -> None:
    """A slot booked meanwhile is not offered again."""
    await agent.book(start="2037-12-08T10:00:00+01:00")
    answer = await agent.call(
        "check_availability", event_type_id=42, time_zone=BERLIN, after="2037-12-08T00:00:00"
    )
    assert answer["slots"][0] == "2037-12-08T10:30:00+01:00"


async def test_args_at_root_books_for_the_call_named_in_the_arguments(agent: Agent) -> None:
    """A tool with args_at_root sends only the arguments; call_id names the call."""
    body = json.dumps(BOOKING_ARGS | {"call_id": "call_root"}).encode()
    answer = await agent.post("book_appointment", body)
    assert answer["booked"] is True
    assert agent.flags("call_root")[0] is True


async def test_args_at_root_without_a_call_id_books_nothing(agent: Agent) -> None:
    """Without a call to book for, the agent gets a sentence and nothing is sent."""
    answer = await agent.post("book_appointment", json.dumps(BOOKING_ARGS).encode())
    assert (answer["booked"], answer["missing"]) == (False, ["call_id"])
    assert agent.calcom.requests == []


async def test_a_start_in_the_past_is_never_sent(agent: Agent) -> None:
    """A start already gone: the agent asks for a future time; Cal.com hears nothing."""
    answer = await agent.book(start="2020-01-07T10:00:00+01:00")
    assert (answer["booked"], answer["missing"]) == (False, ["start"])
    assert "already passed" in answer["message"]
    assert agent.calcom.requests == []


async def test_a_required_booking_field_is_asked_for_then_booked(agent: Agent) -> None:
    """An event type's required field the model left out becomes a question; answered, it
    books."""
    agent.calcom.add_event_type(42, required_fields=("company",))
    first = await agent.book()
    assert (first["booked"], first["missing"]) == (False, ["company"])
    assert "company" in first["message"]
    assert agent.calcom.request_count("create") == 0
    second = await agent.book(responses={"company": "Analytical Engines Ltd"})
    assert second["booked"] is True
    assert agent.calcom.bookings()[0]["bookingFieldsResponses"] == {
        "company": "Analytical Engines Ltd"
    }


async def test_an_attendee_phone_event_type_books_at_the_callers_number(agent: Agent) -> None:
    """An event type held at the attendee's phone books with the caller's number."""
    agent.calcom.add_event_type(42, locations=({"type": "attendeePhone"},))
    answer = await agent.book()
    assert answer["booked"] is True
    assert agent.calcom.bookings()[0]["location"] == "+4930123456"


async def test_a_booking_awaiting_confirmation_is_requested_and_stored_pending(
    agent: Agent,
) -> None:
    """Confirmation required: booked false, pending true, a 'requested' sentence; stored
    pending, which counts as the call's appointment; asked again, the same answer."""
    agent.calcom.add_event_type(42, requires_confirmation=True)
    answer = await agent.book()
    assert (answer["booked"], answer["pending"]) == (False, True)
    assert answer["message"] == (
        "I've requested Thursday, December 3 at 3:00 PM for you. You'll get a confirmation "
        "once it is accepted."
    )
    assert [status for _, status, _ in agent.appointments()] == ["pending"]
    assert agent.flags() == (True, "appointment_booked", "linked")
    again = await agent.book()
    assert again == answer
    assert agent.calcom.request_count("create") == 1


async def test_reschedule_moves_the_calls_appointment(agent: Agent) -> None:
    """A reschedule moves the booking on Cal.com; the new appointment is the call's, the old
    one 'rescheduled', the call still booked; asked again, nothing moves twice."""
    booked = await agent.book()
    answer = await agent.call(
        "reschedule_appointment", start="2037-12-04T11:00:00", time_zone=BERLIN
    )
    assert answer["rescheduled"] is True
    assert answer["start"] == "2037-12-04T10:00:00+00:00"
    assert answer["message"] == "Done: your appointment is now on Friday, December 4 at 11:00 AM."
    assert agent.appointments() == [
        (booked["appointment_id"], "rescheduled", 42),
        (answer["appointment_id"], "booked", 42),
    ]
    assert agent.flags() == (True, "appointment_booked", "linked")
    live = agent.calcom.bookings(include_cancelled=False)
    assert [b["start"] for b in live] == ["2037-12-04T10:00:00.000Z"]
    again = await agent.call(
        "reschedule_appointment", start="2037-12-04T11:00:00", time_zone=BERLIN
    )
    assert again == answer
    assert agent.calcom.request_count("reschedule") == 1


async def test_reschedule_without_an_appointment_says_so(agent: Agent) -> None:
    """Nothing booked on the call: a sentence, no request to Cal.com."""
    answer = await agent.call(
        "reschedule_appointment", start="2037-12-04T11:00:00", time_zone=BERLIN
    )
    assert answer["rescheduled"] is False
    assert "don't see an appointment" in answer["message"]
    assert agent.calcom.requests == []


async def test_reschedule_to_the_past_is_a_question(agent: Agent) -> None:
    """A new start already gone is asked again, not sent."""
    await agent.book()
    answer = await agent.call(
        "reschedule_appointment", start="2020-01-01T10:00:00", time_zone=BERLIN
    )
    assert (answer["rescheduled"], answer["missing"]) == (False, ["start"])
    assert agent.calcom.request_count("reschedule") == 0


async def test_reschedule_to_a_taken_time_keeps_the_appointment(agent: Agent) -> None:
    """A taken new time: the agent offers another; the appointment and the call are unchanged."""
    booked = await agent.book()
    agent.calcom.add_booking(start=datetime(2037, 12, 4, 10, tzinfo=UTC), event_type_id=42)
    answer = await agent.call(
        "reschedule_appointment", start="2037-12-04T11:00:00", time_zone=BERLIN
    )
    assert answer["rescheduled"] is False
    assert "another time" in answer["message"]
    assert agent.appointments() == [(booked["appointment_id"], "booked", 42)]
    assert agent.flags() == (True, "appointment_booked", "linked")
    # Nobody needs to call back: the caller picks another time.
    assert agent.reviews() == []


async def test_reschedule_cal_com_refuses_is_filed_for_the_promised_callback(
    agent: Agent,
) -> None:
    """Cal.com fails the move: the caller hears a call-back is coming, and a review item
    says what they asked for; the appointment and the call stay as they were."""
    booked = await agent.book()
    agent.calcom.fail_next("reschedule", status=500)
    answer = await agent.call(
        "reschedule_appointment", start="2037-12-04T11:00:00", time_zone=BERLIN
    )
    assert answer["rescheduled"] is False
    assert "call you back" in answer["message"]
    assert agent.appointments() == [(booked["appointment_id"], "booked", 42)]
    assert agent.flags() == (True, "appointment_booked", "linked")
    ((reason, context),) = agent.reviews()
    assert reason == "reschedule_failed"
    assert context["details"]["requested_start"] == "2037-12-04T10:00:00.000Z"
    assert context["details"]["appointment_id"] == booked["appointment_id"]
    assert context["details"]["result"] == "calcom_unavailable"


async def test_cancel_with_the_circuit_open_keeps_the_appointment(agent: Agent) -> None:
    """Cal.com unreachable: a sentence about a call-back, the appointment still booked."""
    booked = await agent.book()
    agent.breaker.open = True
    answer = await agent.call("cancel_appointment", time_zone=BERLIN)
    assert answer["cancelled"] is False
    assert "call you back" in answer["message"]
    assert agent.appointments() == [(booked["appointment_id"], "booked", 42)]
    assert agent.calcom.request_count("cancel") == 0
    ((reason, context),) = agent.reviews()
    assert (reason, context["details"]["result"]) == ("cancel_failed", "circuit_open")
    # The booking flags stay: the appointment is still booked until someone cancels it.
    assert agent.flags() == (True, "appointment_booked", "linked")


async def test_cancel_cancels_the_calls_appointment_once(agent: Agent) -> None:
    """A cancel cancels on Cal.com, stores 'cancelled' and unlinks the call; a retry cancels
    nothing more and says the same."""
    booked = await agent.book()
    answer = await agent.call("cancel_appointment", time_zone=BERLIN)
    assert (answer["cancelled"], answer["appointment_id"]) == (True, booked["appointment_id"])
    assert answer["message"] == "Your appointment on Thursday, December 3 at 3:00 PM is cancelled."
    assert agent.appointments() == [(booked["appointment_id"], "cancelled", 42)]
    assert agent.flags() == (False, "appointment_cancelled", "unlinked")
    assert agent.calcom.bookings()[0]["status"] == "cancelled"
    assert await agent.call("cancel_appointment", time_zone=BERLIN) == answer
    assert agent.calcom.request_count("cancel") == 1


async def test_cancel_without_an_appointment_says_so(agent: Agent) -> None:
    """Nothing to cancel: cancelled false and a sentence."""
    answer = await agent.call("cancel_appointment")
    assert answer["cancelled"] is False
    assert "don't see an appointment" in answer["message"]


async def test_the_agents_event_types_bound_the_models_choice(
    make_agent: Callable[..., Any],
) -> None:
    """Configured per agent: no id books the first; an allowed id is honoured; another is
    refused without calling Cal.com."""
    agent: Agent = await make_agent(agent_event_types={"agent_1": [7, 8]})
    first = await agent.book(event_type_id=None)
    second = await agent.book(event_type_id=8, start="2037-12-03T16:00:00+01:00")
    requests = agent.calcom.request_count()
    refused = await agent.book(event_type_id=42, start="2037-12-03T17:00:00+01:00")
    assert (first["booked"], second["booked"]) == (True, True)
    assert [event_type for _, _, event_type in agent.appointments()] == [7, 8]
    assert (refused["booked"], refused["message"]) == (
        False,
        "I'm sorry, I can't book that kind of appointment.",
    )
    assert agent.calcom.request_count() == requests


async def test_the_function_url_and_the_default_choose_the_event_type(
    make_agent: Callable[..., Any],
) -> None:
    """The URL's event_type_id comes before the default; the default serves the rest."""
    agent: Agent = await make_agent(default_event_type_id=5)
    await agent.call(
        "book_appointment",
        "book_appointment?event_type_id=9",
        **(BOOKING_ARGS | {"event_type_id": None}),
    )
    await agent.book(event_type_id=None, start="2037-12-03T16:00:00+01:00")
    assert [event_type for _, _, event_type in agent.appointments()] == [9, 5]


async def test_without_configuration_the_model_must_name_the_event_type(agent: Agent) -> None:
    """Nothing configured: a missing event type is asked for."""
    answer = await agent.book(event_type_id=None)
    assert (answer["booked"], answer["missing"]) == (False, ["event_type_id"])


@pytest.mark.parametrize(
    "name", ["check_availability", "reschedule_appointment", "cancel_appointment"]
)
async def test_a_bad_signature_is_still_refused(agent: Agent, name: str) -> None:
    """Every function checks the signature: a wrong one is 401 and nothing is sent."""
    body = function_body(name, {"time_zone": BERLIN})
    response = await agent.http.post(
        f"{FUNCTIONS}/{name}", content=body, headers=retell_headers(body, "another key")
    )
    assert response.status_code == 401
    assert agent.calcom.requests == []


async def test_availability_unreachable_promises_a_call_back_only_with_a_record(
    agent: Agent,
) -> None:
    """Cal.com fails the slots read: with a call to file, the call-back is promised and a
    review item written first; without one, the caller is asked to try again instead."""
    agent.calcom.fail_next("slots", status=500, times=6)
    answer = await agent.call("check_availability", event_type_id=42, time_zone=BERLIN)
    assert (answer["available"], "call you back" in answer["message"]) == (False, True)
    ((reason, context),) = agent.reviews()
    assert (reason, context["details"]["event_type_id"]) == ("availability_failed", 42)

    anonymous = json.dumps({"event_type_id": 42, "time_zone": BERLIN}).encode()
    answer = await agent.post("check_availability", anonymous)
    assert answer["available"] is False
    assert "call you back" not in answer["message"]
    assert len(agent.reviews()) == 1


async def test_reschedule_whose_answer_was_lost_is_found_and_told_as_done(agent: Agent) -> None:
    """Cal.com moved the booking but its answer was lost: the move is looked up, recorded
    and told as done; the retry of the move is not sent again; nobody is filed."""
    booked = await agent.book()
    agent.calcom.lose_response_next("reschedule")
    answer = await agent.call(
        "reschedule_appointment", start="2037-12-04T11:00:00", time_zone=BERLIN
    )
    assert answer["rescheduled"] is True
    assert agent.appointments() == [
        (booked["appointment_id"], "rescheduled", 42),
        (answer["appointment_id"], "booked", 42),
    ]
    assert agent.flags() == (True, "appointment_booked", "linked")
    assert agent.calcom.request_count("reschedule") == 1
    assert [b["start"] for b in agent.calcom.bookings(include_cancelled=False)] == [
        "2037-12-04T10:00:00.000Z"
    ]
    assert agent.reviews() == []


async def test_cancel_follows_a_move_we_never_recorded(agent: Agent) -> None:
    """The booking we hold was moved on Cal.com without our knowing (its answer and its
    webhook lost): cancelling cancels the booking it moved to, not only the stale one."""
    await agent.book()
    (held,) = agent.calcom.bookings()
    async with httpx.AsyncClient() as host:  # the host moves it in Cal.com; no webhook
        response = await host.post(
            f"{agent.calcom.base_url}/bookings/{held['uid']}/reschedule",
            json={"start": "2037-12-05T10:00:00Z"},
            headers={
                "Authorization": f"Bearer {agent.calcom.api_key}",
                "cal-api-version": "2024-08-13",
            },
        )
    assert response.status_code == 201, response.text
    assert len(agent.calcom.bookings(include_cancelled=False)) == 1

    answer = await agent.call("cancel_appointment", time_zone=BERLIN)
    assert answer["cancelled"] is True
    assert agent.calcom.bookings(include_cancelled=False) == []
    assert agent.flags() == (False, "appointment_cancelled", "unlinked")
