"""Finding 5: out-of-range input is refused with a message on both databases, and writes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bookingguard.db.models import (
    AlertSilence,
    Appointment,
    Call,
    ConsistencyAlert,
    ManualReviewItem,
    WebhookEvent,
)
from bookingguard.db.uow import UnitOfWork
from tests.integration.edge.conftest import Edge

NUL = "\x00"
FAR_FUTURE = "9999-12-31T23:00:00-12:00"
BOOK = "/retell/functions/book_appointment"


def retell_event(**call: Any) -> dict[str, Any]:
    return {"event": "call_ended", "call": {"call_id": "call-1", **call}}


def function_call(call_id: str = "call-1", **args: Any) -> dict[str, Any]:
    arguments = {
        "start": "2026-12-03T15:00:00+01:00",
        "event_type_id": 42,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "time_zone": "Europe/Berlin",
        **args,
    }
    return {"name": "book_appointment", "call": {"call_id": call_id}, "args": arguments}


def calcom_event(metadata: dict[str, Any] | None = None, **payload: Any) -> dict[str, Any]:
    return {
        "triggerEvent": "BOOKING_CREATED",
        "createdAt": datetime.now(UTC).isoformat(),
        "payload": {
            "uid": "uid-1",
            "bookingId": 1,
            "eventTypeId": 42,
            "startTime": "2026-12-03T14:00:00Z",
            "endTime": "2026-12-03T14:30:00Z",
            "metadata": {"retell_call_id": "call-1", **(metadata or {})},
            **payload,
        },
    }


#: (where, what) for each hostile input.
CASES: list[tuple[str, Any]] = [
    ("retell", retell_event(call_id=f"call{NUL}1")),
    ("retell", retell_event(from_number=f"+49{NUL}30")),
    ("retell", retell_event(disconnection_reason=f"hangup{NUL}")),
    ("retell", retell_event(start_timestamp=10**18)),
    ("retell", retell_event(end_timestamp=-(10**18))),
    ("retell", retell_event(call_id="c" * 10_000)),
    ("book", function_call(call_id=f"call{NUL}1")),
    ("book", function_call(name=f"Ada{NUL}")),
    ("book", function_call(email=f"ada{NUL}@example.com")),
    ("book", function_call(event_type_id=2**63)),
    ("book", function_call(start=FAR_FUTURE)),
    ("book", function_call(start="9999-12-31T23:00:00", time_zone="Etc/GMT+12")),
    ("book", function_call(time_zone=f"Europe/Berlin{NUL}")),
    ("calcom", calcom_event(startTime=FAR_FUTURE)),
    ("calcom", calcom_event(endTime="0001-01-01T00:00:00+14:00")),
    ("calcom", calcom_event(uid="u" * 10_000)),
    ("calcom", calcom_event(uid=f"uid{NUL}1")),
    ("calcom", calcom_event(status=f"booked{NUL}")),
    ("calcom", calcom_event(metadata={"retell_call_id": "r" * 500})),
    ("calcom", calcom_event(metadata={"retell_call_id": f"call{NUL}1"})),
    ("calcom", calcom_event(metadata={"note": f"hello{NUL}"})),
    ("calcom", calcom_event(bookingId=2**63)),
    ("calcom", calcom_event(eventTypeId=2**63)),
    ("calcom", {**calcom_event(), "createdAt": "0001-01-01T00:00:00+14:00"}),
    # Finding 10: no createdAt, or one without a zone, skipped the freshness check.
    ("calcom", {key: value for key, value in calcom_event().items() if key != "createdAt"}),
    ("calcom", {**calcom_event(), "createdAt": datetime.now(UTC).replace(tzinfo=None).isoformat()}),
    ("calcom", {**calcom_event(), "createdAt": None}),
    ("api-post", ("/api/v1/silences", {"comment": f"quiet{NUL}", "duration_minutes": 5})),
    ("api-post", ("/api/v1/silences", {"comment": "q", "duration_minutes": 5, "entity_type": NUL})),
    ("api-post", ("/api/v1/silences", {"comment": "\u200b\u2060 ", "duration_minutes": 5})),
    # Found by the stateful schema test: null is not a matcher (the schema says so).
    (
        "api-post",
        (
            "/api/v1/silences",
            {"comment": "q", "duration_minutes": 5, "alert_type": "missing", "entity_id": None},
        ),
    ),
    ("api-post", ("/api/v1/review-queue/1/resolve", {"note": "\u200b"})),
    ("api-post", ("/api/v1/review-queue/1/resolve", {"note": f"done{NUL}"})),
    ("get", "/api/v1/review-queue/9223372036854775808"),
    ("get", "/alerts?type=missing%00"),
    ("get", "/alerts?status=%00"),
    ("dashboard-post", ("/review/9223372036854775808/claim", {})),
    ("dashboard-post", ("/review/1/resolve", {"note": f"done{NUL}"})),
]


async def send(edge: Edge, where: str, what: Any) -> Any:
    if where == "retell":
        return await edge.retell("/webhooks/retell", json.dumps(what).encode())
    if where == "book":
        return await edge.retell(BOOK, json.dumps(what).encode())
    if where == "calcom":
        # Hostile on purpose: not held to Cal.com's documented payload first.
        return await edge.calcom(what, documented=False)
    if where == "api-post":
        path, document = what
        return await edge.http.post(path, json=document)
    if where == "dashboard-post":
        path, form = what
        return await edge.http.post(path, data=form)
    return await edge.http.get(what)


def seed_review_item(edge: Edge) -> None:
    with UnitOfWork(edge.database.sessions) as uow:
        call = Call(retell_call_id="seeded", appointment_made=False)
        uow.session.add(call)
        uow.session.flush()
        uow.session.add(ManualReviewItem(call_id=call.id, reason="seeded", priority=2))
        uow.commit()


def counts(edge: Edge) -> dict[str, int]:
    with UnitOfWork(edge.database.sessions) as uow:
        return {
            model.__name__: int(uow.session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Call, Appointment, WebhookEvent, ConsistencyAlert, AlertSilence)
        }


@pytest.mark.parametrize(
    ("where", "what"), CASES, ids=[f"{w}-{i}" for i, (w, _) in enumerate(CASES)]
)
async def test_out_of_range_input_is_refused_and_writes_nothing(
    edge: Edge, where: str, what: Any
) -> None:
    """Each hostile input is refused with a message (a 4xx; from the agent's functions a 200
    asking again, as they never answer 4xx to what the model filled); nothing is written."""
    seed_review_item(edge)
    before = counts(edge)
    response = await send(edge, where, what)
    if where == "book":
        assert response.status_code == 200, (response.status_code, response.text[:300])
        answer = response.json()
        assert answer["booked"] is False
        assert answer["missing"]
        assert answer["message"]
    else:
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
        if response.headers["content-type"].startswith(("application/json", "application/problem")):
            assert response.json()["detail"]
    assert counts(edge) == before


async def test_alerts_since_before_year_one_in_utc_is_not_a_500(edge: Edge) -> None:
    """since=0001-01-01T00:00:00+14:00 (before year 1 in UTC) filters from the start: 200."""
    response = await edge.http.get("/api/v1/alerts", params={"since": "0001-01-01T00:00:00+14:00"})
    assert response.status_code == 200
    assert response.json()["items"] == []


async def test_in_range_input_still_works(edge: Edge) -> None:
    """The bounds refuse nothing ordinary: a normal Cal.com delivery and Retell event are stored."""
    retell = await edge.retell("/webhooks/retell", json.dumps(retell_event()).encode())
    created = await edge.calcom(
        calcom_event(createdAt=(datetime.now(UTC) - timedelta(seconds=5)).isoformat())
    )
    assert retell.status_code == 204
    assert created.status_code == 204
    assert counts(edge)["Appointment"] == 1
