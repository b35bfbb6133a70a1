"""The HTTP endpoints in-process (ASGI), on both dialects, against the Cal.com stand-in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from bookingguard.api import create_app
from bookingguard.bootstrap import Services, build_services
from bookingguard.db.models import (
    Appointment,
    Call,
    ConsistencyAlert,
    ManualReviewItem,
    WebhookEvent,
)
from bookingguard.db.uow import UnitOfWork
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.support.booking_fakes import FakeBreaker, ImmediateRetrier
from tests.support.calcom_standin import CalcomStandin
from tests.support.retell import calcom_headers, call_object, function_call_body, retell_headers
from tests.support.server import LoopbackServer

RETELL_KEY = "retell_test_key"
CALCOM_SECRET = "whsec_test"
BOOK = "/retell/functions/book_appointment"


@dataclass
class Api:
    http: httpx.AsyncClient
    services: Services
    breaker: FakeBreaker
    calcom: CalcomStandin

    async def book(self, body: bytes, **headers: str) -> httpx.Response:
        return await self.http.post(
            BOOK, content=body, headers=retell_headers(body, RETELL_KEY) | headers
        )

    async def retell(self, document: dict[str, object]) -> httpx.Response:
        body = json.dumps(document).encode()
        return await self.http.post(
            "/webhooks/retell", content=body, headers=retell_headers(body, RETELL_KEY)
        )

    async def calcom_event(self, body: bytes) -> httpx.Response:
        return await self.http.post(
            "/webhooks/calcom", content=body, headers=calcom_headers(body, CALCOM_SECRET)
        )

    def count(self, model: type[object]) -> int:
        with UnitOfWork(self.services.sessions) as uow:
            return int(uow.session.scalar(select(func.count()).select_from(model)) or 0)

    def call(self, retell_call_id: str = "call_1") -> Call:
        with UnitOfWork(self.services.sessions) as uow:
            return uow.session.scalars(
                select(Call).where(Call.retell_call_id == retell_call_id)
            ).one()


def settings_for(database: TestDatabase, calcom: CalcomStandin) -> Settings:
    return Settings(
        database_url=database.url,
        calcom={
            "api_key": calcom.api_key,
            "base_url": calcom.base_url,
            "webhook_secret": CALCOM_SECRET,
        },
        retell={
            "api_key": RETELL_KEY,
            "outcome_mapping": {"booked_callback": "callback_requested"},
        },
    )


@pytest.fixture
async def api(database: TestDatabase, calcom_standin: CalcomStandin) -> AsyncIterator[Api]:
    settings = settings_for(database, calcom_standin)
    breaker = FakeBreaker()
    services = build_services(
        settings, breaker=breaker, retrier=ImmediateRetrier(), engine=database.engine
    )
    app = create_app(settings, services=services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as http:
        yield Api(http, services, breaker, calcom_standin)
    await services.calcom.aclose()


async def test_booking_function_books(api: Api) -> None:
    """A signed function call books and answers booked, the appointment and a sentence."""
    response = await api.book(function_call_body())
    assert response.status_code == 200
    answer = response.json()
    assert answer["booked"] is True
    assert isinstance(answer["appointment_id"], int)
    assert answer["start"] == "2037-12-03T14:00:00+00:00"
    assert answer["message"] == "You're booked for Thursday, December 3 at 3:00 PM."
    assert len(api.calcom.bookings()) == 1
    assert api.call().appointment_made is True


async def test_unsigned_function_call_is_refused(api: Api) -> None:
    """No signature: 401, no call stored, nothing sent to Cal.com."""
    response = await api.http.post(BOOK, content=function_call_body())
    assert response.status_code == 401
    assert api.count(Call) == 0
    assert api.calcom.requests == []


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: s.replace("v=", "t="), id="malformed"),
        pytest.param(lambda s: s[:-4] + "0000", id="wrong"),
    ],
)
async def test_bad_signature_is_refused(api: Api, mangle: object) -> None:
    """A malformed or wrong signature: 401 and nothing stored."""
    body = function_call_body()
    header = retell_headers(body, RETELL_KEY)["x-retell-signature"]
    response = await api.http.post(
        BOOK, content=body, headers={"x-retell-signature": mangle(header)}
    )  # type: ignore[operator]
    assert response.status_code == 401
    assert api.count(Call) == 0


async def test_stale_signature_is_refused(api: Api) -> None:
    """A signature older than five minutes: 401."""
    body = function_call_body()
    response = await api.http.post(
        BOOK, content=body, headers=retell_headers(body, RETELL_KEY, age_seconds=301)
    )
    assert response.status_code == 401
    assert api.calcom.requests == []


async def test_malformed_json_is_400(api: Api) -> None:
    """A signed body that is not JSON: 400 with a message."""
    response = await api.book(b'{"name": "book_appointment",')
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        ({"start": None}, ["start"]),
        ({"start": "next tuesday-ish"}, ["start"]),
        ({"time_zone": "CET+1"}, ["time_zone"]),
        ({"event_type_id": "forty-two"}, ["event_type_id"]),
        ({"email": None, "phone": None}, ["email", "phone"]),
        ({"name": None, "email": "not-an-address"}, ["name", "email"]),
    ],
)
async def test_a_bad_argument_is_answered_in_words_naming_the_field(
    api: Api, args: dict[str, object], missing: list[str]
) -> None:
    """A missing or malformed argument: 200, booked false, a question and the fields; nothing
    sent to Cal.com."""
    response = await api.book(function_call_body(**args))
    assert response.status_code == 200
    answer = response.json()
    assert (answer["booked"], answer["missing"]) == (False, missing)
    assert answer["message"].endswith("?")
    assert api.calcom.requests == []


async def test_naive_start_is_read_in_callers_zone(api: Api) -> None:
    """A start without an offset is the caller's local time."""
    response = await api.book(function_call_body(start="2037-12-03T15:00:00"))
    assert response.json()["start"] == "2037-12-03T14:00:00+00:00"


async def test_open_circuit_answers_200_not_booked(api: Api) -> None:
    """Circuit open: 200, booked false, a sentence about a call-back, and a review item."""
    api.breaker.open = True
    response = await api.book(function_call_body())
    assert response.status_code == 200
    answer = response.json()
    assert answer["booked"] is False
    assert answer["appointment_id"] is None
    assert "call you back" in answer["message"]
    assert api.count(ManualReviewItem) == 1
    assert api.calcom.requests == []


async def test_taken_slot_asks_for_another(api: Api) -> None:
    """A taken slot: booked false and the agent offers another time."""
    api.calcom.add_booking(start=datetime(2037, 12, 3, 14, tzinfo=UTC), event_type_id=42)
    answer = (await api.book(function_call_body())).json()
    assert answer["booked"] is False
    assert "another time" in answer["message"]


def _retell_event(event: str, **call: object) -> dict[str, object]:
    return {"event": event, "call": call_object("call_1", **call)}


async def test_retell_webhooks_upsert_the_call(api: Api) -> None:
    """call_started then call_ended create and update one call row."""
    started = 1_764_414_000_000
    first = await api.retell(
        _retell_event(
            "call_started",
            direction="outbound",
            from_number="+4930111",
            to_number="+4930222",
            call_status="ongoing",
            start_timestamp=started,
        )
    )
    second = await api.retell(
        _retell_event(
            "call_ended",
            direction="outbound",
            from_number="+4930111",
            to_number="+4930222",
            call_status="ended",
            end_timestamp=started + 90_000,
        )
    )
    assert (first.status_code, second.status_code) == (204, 204)
    call = api.call()
    assert (call.direction, call.from_number, call.to_number) == (
        "outbound",
        "+4930111",
        "+4930222",
    )
    assert call.call_status == "ended"
    assert call.started_at == datetime.fromtimestamp(started / 1000, UTC)
    assert call.ended_at == call.started_at + timedelta(seconds=90)


async def test_retell_redelivery_changes_nothing(api: Api) -> None:
    """The same event for the same call is applied once."""
    await api.retell(_retell_event("call_started", from_number="+4930111"))
    again = await api.retell(_retell_event("call_started", from_number="+4930999"))
    assert again.status_code == 204
    assert api.call().from_number == "+4930111"
    assert api.count(WebhookEvent) == 1


async def test_call_analyzed_maps_the_outcome(api: Api) -> None:
    """call_analyzed sets the session outcome through the configurable mapping."""
    await api.retell(
        _retell_event(
            "call_analyzed",
            call_analysis={"custom_analysis_data": {"session_outcome": "booked_callback"}},
        )
    )
    assert api.call().session_outcome == "callback_requested"


async def test_analysis_never_books(api: Api) -> None:
    """An analysis claiming a booking does not flag a call that has none (no phantom)."""
    await api.retell(
        _retell_event(
            "call_analyzed",
            call_analysis={"custom_analysis_data": {"session_outcome": "appointment_booked"}},
        )
    )
    call = api.call()
    assert call.appointment_made is False
    assert call.session_outcome != "appointment_booked"


async def test_unknown_retell_event_is_ignored(api: Api) -> None:
    """An event we do not handle: 204, nothing stored."""
    response = await api.retell(_retell_event("transcript_updated"))
    assert response.status_code == 204
    assert api.count(Call) == 0


async def test_retell_webhook_wrong_shape_is_422(api: Api) -> None:
    """A call_started without a call id: 422 naming call.call_id."""
    response = await api.retell({"event": "call_started", "call": {"direction": "inbound"}})
    assert response.status_code == 422
    assert "call.call_id" in response.json()["detail"]


async def test_calcom_cancel_webhook_unlinks_the_call(api: Api) -> None:
    """BOOKING_CANCELLED cancels our appointment and the call stops claiming a booking."""
    booked = (await api.book(function_call_body())).json()
    (booking,) = api.calcom.bookings()
    api.calcom.cancel(booking["uid"])
    response = await api.calcom_event(api.calcom.webhook_body("BOOKING_CANCELLED", booking["uid"]))
    assert response.status_code == 204
    with UnitOfWork(api.services.sessions) as uow:
        appointment = uow.session.get(Appointment, booked["appointment_id"])
        assert appointment is not None
        assert appointment.status == "cancelled"
    call = api.call()
    assert call.appointment_made is False
    assert call.session_outcome == "appointment_cancelled"


async def test_calcom_bad_signature_stores_nothing(api: Api) -> None:
    """A wrong X-Cal-Signature-256: 401, no webhook event recorded, no alert."""
    booking = api.calcom.add_booking(start=datetime(2026, 12, 4, 9, tzinfo=UTC), event_type_id=42)
    body = api.calcom.webhook_body("BOOKING_CREATED", booking["uid"])
    response = await api.http.post(
        "/webhooks/calcom", content=body, headers={"x-cal-signature-256": "0" * 64}
    )
    assert response.status_code == 401
    assert api.count(WebhookEvent) == 0
    assert api.count(ConsistencyAlert) == 0


async def test_calcom_stale_delivery_is_refused(api: Api) -> None:
    """A delivery created more than five minutes ago: 401."""
    booking = api.calcom.add_booking(start=datetime(2026, 12, 4, 9, tzinfo=UTC), event_type_id=42)
    document = json.loads(api.calcom.webhook_body("BOOKING_CREATED", booking["uid"]))
    document["createdAt"] = (datetime.now(UTC) - timedelta(minutes=6)).isoformat()
    response = await api.calcom_event(json.dumps(document).encode())
    assert response.status_code == 401
    assert api.count(WebhookEvent) == 0


async def test_calcom_booking_made_elsewhere_is_stored_without_alert(api: Api) -> None:
    """A booking made outside the agent (no metadata of ours): a calcom appointment, no alert."""
    booking = api.calcom.add_booking(start=datetime(2026, 12, 4, 9, tzinfo=UTC), event_type_id=42)
    response = await api.calcom_event(api.calcom.webhook_body("BOOKING_CREATED", booking["uid"]))
    assert response.status_code == 204
    with UnitOfWork(api.services.sessions) as uow:
        appointment = uow.session.scalars(select(Appointment)).one()
    assert (appointment.source, appointment.call_id, appointment.calcom_booking_uid) == (
        "calcom",
        None,
        booking["uid"],
    )
    assert api.count(ConsistencyAlert) == 0


async def test_calcom_booking_naming_a_call_is_not_linked_by_that_alone(api: Api) -> None:
    """A booking we did not make whose metadata names a call (no key we issued) is stored as
    external and alerted; the call is not booked by it. Redelivered, nothing changes."""
    await api.retell(_retell_event("call_started", direction="inbound"))
    booking = api.calcom.add_booking(
        start=datetime(2026, 12, 4, 9, tzinfo=UTC),
        event_type_id=42,
        metadata={"retell_call_id": "call_1"},
    )
    for _ in range(2):
        response = await api.calcom_event(
            api.calcom.webhook_body("BOOKING_CREATED", booking["uid"])
        )
        assert response.status_code == 204
    call = api.call()
    assert (call.appointment_made, call.appointment_link_status) == (False, None)
    with UnitOfWork(api.services.sessions) as uow:
        appointment = uow.session.scalars(select(Appointment)).one()
        alert = uow.session.scalars(select(ConsistencyAlert)).one()
    assert (appointment.source, appointment.call_id) == ("calcom", None)
    assert (alert.alert_type, alert.entity_id) == ("unverified_booking_metadata", appointment.id)


async def test_calcom_reschedule_moves_the_appointment(api: Api) -> None:
    """BOOKING_RESCHEDULED: the old appointment is rescheduled, the new one linked to the call."""
    await api.book(function_call_body())
    (old,) = api.calcom.bookings()
    new = api.calcom.add_booking(start=datetime(2026, 12, 5, 10, tzinfo=UTC), event_type_id=42)
    document = json.loads(api.calcom.webhook_body("BOOKING_RESCHEDULED", new["uid"]))
    document["payload"]["rescheduleUid"] = old["uid"]
    response = await api.calcom_event(json.dumps(document).encode())
    assert response.status_code == 204
    with UnitOfWork(api.services.sessions) as uow:
        moved, current = uow.session.scalars(select(Appointment).order_by(Appointment.id)).all()
    assert (moved.calcom_booking_uid, moved.status) == (old["uid"], "rescheduled")
    assert (current.calcom_booking_uid, current.status) == (new["uid"], "booked")
    assert current.starts_at == datetime(2026, 12, 5, 10, tzinfo=UTC)
    assert current.call_id == moved.call_id == api.call().id
    assert api.call().appointment_made is True


async def test_calcom_malformed_json_is_400(api: Api) -> None:
    """A signed Cal.com body that is not JSON: 400."""
    response = await api.http.post(
        "/webhooks/calcom",
        content=b"not json",
        headers=calcom_headers(b"not json", CALCOM_SECRET, documented=False),
    )
    assert response.status_code == 400


def test_create_app_builds_its_own_services(
    database: TestDatabase, calcom_standin: CalcomStandin
) -> None:
    """create_app(settings) alone builds its services at start-up and serves requests."""
    app = create_app(settings_for(database, calcom_standin))
    with LoopbackServer(app) as server:
        body = function_call_body()
        unsigned = httpx.post(server.url + BOOK, content=body)
        signed = httpx.post(
            server.url + BOOK, content=body, headers=retell_headers(body, RETELL_KEY), timeout=30
        )
    assert unsigned.status_code == 401
    assert signed.status_code == 200
    assert signed.json()["booked"] is True
