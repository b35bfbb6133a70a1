"""Finding 8: with every secret configured, no log line and no response shows any of them."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from bookingguard.api.server import build_server_app
from bookingguard.db.models import Call
from bookingguard.db.uow import UnitOfWork
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.support.calcom_standin import CalcomStandin
from tests.support.retell import calcom_headers, function_call_body, retell_headers
from tests.support.slack import SlackStandIn
from tests.support.smtp import SmtpSink

RETELL_KEY = "retell-key-secret-9a8b7c6d"
CALCOM_WEBHOOK_SECRET = "calcom-whsec-secret-1f2e3d4c"
SMTP_PASSWORD = "smtp-password-secret-5e6f7a8b"
API_TOKEN = "api-token-secret-0c1d2e3f4a5b"


async def test_no_secret_in_any_log_line_or_response(
    database: TestDatabase,
    calcom_standin: CalcomStandin,
    slack_standin: SlackStandIn,
    smtp_sink: tuple[SmtpSink, int],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Deliveries (Slack, e-mail), webhooks, the booking function, API and sign-in leak nothing."""
    _, smtp_port = smtp_sink
    settings = Settings(
        database_url=database.url,
        calcom={
            "api_key": calcom_standin.api_key,
            "base_url": calcom_standin.base_url,
            "webhook_secret": CALCOM_WEBHOOK_SECRET,
        },
        retell={"api_key": RETELL_KEY},
        alerts={
            "slack_webhook_url": slack_standin.url,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "smtp_username": "bookingguard",
            "smtp_password": SMTP_PASSWORD,
            "email_to": ["ops@example.com"],
        },
        api={"rate_limit": "100000/minute", "tokens": [f"ops:operate:{API_TOKEN}"]},
    )
    secrets = {
        "slack webhook url": slack_standin.url,
        "slack webhook path": slack_standin.url.split("/services/")[1],
        "smtp password": SMTP_PASSWORD,
        "api token": API_TOKEN,
        "retell key": RETELL_KEY,
        "calcom key": calcom_standin.api_key,
        "calcom webhook secret": CALCOM_WEBHOOK_SECRET,
    }
    with UnitOfWork(database.sessions) as uow:
        uow.session.add(
            Call(
                retell_call_id="phantom",
                appointment_made=True,
                session_outcome="appointment_booked",
            )
        )
        uow.commit()
    caplog.set_level(logging.DEBUG)
    app = build_server_app(settings, engine=database.engine)
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        responses.append(
            await http.post("/api/v1/consistency/runs", json={"scan_all": True}, headers=auth)
        )
        stats = app.state.backends.monitoring.deliver(timeout_seconds=20)
        book = function_call_body("call-secret-scan")
        responses.append(
            await http.post(
                "/retell/functions/book_appointment",
                content=book,
                headers=retell_headers(book, RETELL_KEY),
            )
        )
        event = json.dumps({"event": "call_started", "call": {"call_id": "c-2"}}).encode()
        responses.append(
            await http.post(
                "/webhooks/retell", content=event, headers=retell_headers(event, RETELL_KEY)
            )
        )
        responses.append(
            await http.post(
                "/webhooks/retell", content=event, headers=retell_headers(event, "wrong")
            )
        )
        cancel = json.dumps(
            {"triggerEvent": "BOOKING_CANCELLED", "payload": {"uid": "unknown-uid"}}
        ).encode()
        responses.append(
            await http.post(
                "/webhooks/calcom",
                content=cancel,
                # A minimal delivery: this test is about secrets, not the payload's shape.
                headers=calcom_headers(cancel, CALCOM_WEBHOOK_SECRET, documented=False),
            )
        )
        responses.append(await http.get("/api/v1/alerts", headers=auth))
        responses.append(await http.get(f"/login?token={API_TOKEN}"))
        responses.append(await http.get("/readyz"))
        responses.append(await http.get("/metrics"))
    assert slack_standin.received, "a Slack delivery was made"
    assert stats is not None
    assert responses[1].json()["booked"] is True
    lines = [record.getMessage() for record in caplog.records]
    captured = capsys.readouterr()
    lines += captured.out.splitlines() + captured.err.splitlines()
    assert any("HTTP Request" in line for line in lines), "httpx's request log was captured"
    for name, secret in secrets.items():
        leaking_lines = [line for line in lines if secret in line]
        assert leaking_lines == [], f"{name} in the log: {leaking_lines[:2]}"
        leaking = [r.request.url.path for r in responses if secret in r.text]
        assert leaking == [], f"{name} in the responses of {leaking}"
        assert secret not in "".join(r.headers.get("set-cookie", "") for r in responses)
