"""Signing helpers for tests that play Retell or Cal.com against the HTTP service."""

from __future__ import annotations

import json
import time
from typing import Any

from bookingguard.api.signatures import calcom_signature, retell_signature
from tests.contracts.calcom.webhook_payload import check_webhook

__all__ = ["calcom_headers", "function_call_body", "retell_headers"]


def retell_headers(body: bytes, api_key: str, *, age_seconds: float = 0.0) -> dict[str, str]:
    """Headers Retell would send with ``body``, signed ``age_seconds`` ago."""
    timestamp_ms = int((time.time() - age_seconds) * 1000)
    return {
        "content-type": "application/json",
        "x-retell-signature": retell_signature(body, api_key, timestamp_ms=timestamp_ms),
    }


def calcom_headers(body: bytes, secret: str, *, documented: bool = True) -> dict[str, str]:
    """Headers Cal.com would send with ``body``, held first to Cal.com's documented payload
    (``documented=False`` for a test that sends a malformed body on purpose)."""
    if documented:
        check_webhook(body)
    return {
        "content-type": "application/json",
        "x-cal-signature-256": calcom_signature(body, secret),
    }


def function_call_body(call_id: str = "call_1", **args: Any) -> bytes:
    """A Retell custom-function request for ``book_appointment``."""
    arguments = {
        "start": "2026-12-03T15:00:00+01:00",
        "event_type_id": 42,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+4930123456",
        "time_zone": "Europe/Berlin",
    }
    arguments.update(args)
    document = {
        "name": "book_appointment",
        "call": {"call_id": call_id, "agent_id": "agent_1", "call_status": "ongoing"},
        "args": {k: v for k, v in arguments.items() if v is not None},
    }
    return json.dumps(document).encode()
