"""Finding 10: failed webhook signatures are rate limited per client; signed requests are not."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from bookingguard.api.server import build_server_app
from tests.conftest import TestDatabase
from tests.integration.edge.conftest import CALCOM_SECRET, RETELL_KEY, edge_settings
from tests.support.calcom_standin import CalcomStandin
from tests.support.retell import calcom_headers, retell_headers


async def test_bad_signatures_past_the_limit_are_429_and_good_ones_pass(
    database: TestDatabase, calcom_standin: CalcomStandin
) -> None:
    """Three bad signatures are 401, the fourth 429 with Retry-After; a signed event still lands."""
    settings = edge_settings(
        database, calcom_standin, api={"signature_failure_rate_limit": "3/minute"}
    )
    app = build_server_app(settings, engine=database.engine)
    event = json.dumps({"event": "call_started", "call": {"call_id": "c-1"}}).encode()
    cancel = json.dumps(
        {
            "triggerEvent": "BOOKING_CANCELLED",
            "createdAt": datetime.now(UTC).isoformat(),
            "payload": {"uid": "u"},
        }
    ).encode()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.9", 1234)),
        base_url="http://testserver",
    ) as attacker:
        refused = [
            (await attacker.post("/webhooks/retell", content=event)).status_code,
            (await attacker.post("/webhooks/calcom", content=cancel)).status_code,
            (
                await attacker.post(
                    "/webhooks/retell", content=event, headers=retell_headers(event, "guess")
                )
            ).status_code,
        ]
        limited = await attacker.post("/webhooks/calcom", content=cancel)
        signed = await attacker.post(
            "/webhooks/retell", content=event, headers=retell_headers(event, RETELL_KEY)
        )
        signed_calcom = await attacker.post(
            "/webhooks/calcom",
            content=cancel,
            # A minimal delivery: this test is about signatures, not the payload's shape.
            headers=calcom_headers(cancel, CALCOM_SECRET, documented=False),
        )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("192.0.2.1", 1234)),
        base_url="http://testserver",
    ) as other_client:
        other = await other_client.post("/webhooks/retell", content=event)
    assert refused == [401, 401, 401]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert "bad signature" in limited.json()["detail"]
    assert signed.status_code == 204
    assert signed_calcom.status_code == 204
    assert other.status_code == 401, "another client has its own count"
