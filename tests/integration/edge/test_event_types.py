"""Finding 7: an event type outside the configured set is refused in words, Cal.com untouched,
and the circuits ``/metrics`` reports stay the configured ones however many ids are tried."""

from __future__ import annotations

import json
import re

import httpx

from bookingguard.api.routes.retell_words import CANT_BOOK_THAT
from bookingguard.api.server import build_server_app
from tests.conftest import TestDatabase
from tests.integration.edge.conftest import API_SECRET, RETELL_KEY, edge_settings
from tests.support.calcom_standin import CalcomStandin
from tests.support.retell import BOOKING_ARGS, retell_headers

BOOK = "/retell/functions/book_appointment"
CIRCUIT_LABEL = re.compile(r'^bookingguard_circuit_\w+\{[^}]*circuit="([^"]*)"', re.MULTILINE)


def booking(call_id: str, event_type_id: int) -> bytes:
    args = {**BOOKING_ARGS, "event_type_id": event_type_id}
    return json.dumps(
        {"name": "book_appointment", "call": {"call_id": call_id}, "args": args}
    ).encode()


async def test_unknown_event_types_are_refused_and_add_no_circuit(
    database: TestDatabase, calcom_standin: CalcomStandin
) -> None:
    """60 distinct ids beside the configured 42: each "can't book that", no Cal.com request,
    and /metrics names only the configured event type's circuit."""
    settings = edge_settings(database, calcom_standin)
    settings = settings.model_copy(
        update={"retell": settings.retell.model_copy(update={"default_event_type_id": 42})}
    )
    app = build_server_app(settings, engine=database.engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        unknown = [*range(1000, 1059), 2**31 - 1]
        answers = []
        for index, event_type_id in enumerate(unknown):
            body = booking(f"call-{index}", event_type_id)
            answer = await http.post(BOOK, content=body, headers=retell_headers(body, RETELL_KEY))
            answers.append((answer.status_code, answer.json()["booked"], answer.json()["message"]))
        refused_requests = calcom_standin.request_count()
        body = booking("call-known", 42)
        known = await http.post(BOOK, content=body, headers=retell_headers(body, RETELL_KEY))
        metrics = await http.get("/metrics", headers={"Authorization": f"Bearer {API_SECRET}"})
    assert set(answers) == {(200, False, CANT_BOOK_THAT)}
    assert refused_requests == 0
    assert known.json()["booked"] is True
    assert set(CIRCUIT_LABEL.findall(metrics.text)) == {"appointment_booking:event_type:42"}
