"""Signing helpers and Retell payloads for tests that play Retell or Cal.com against the service.

The payloads are built from the ``retell-sdk`` package's own call type
(``PhoneCallResponse``), so they carry what Retell really sends.
"""

from __future__ import annotations

import json
import time
from typing import Any

from retell.types import PhoneCallResponse

from bookingguard.api.signatures import calcom_signature, retell_signature
from tests.contracts.calcom.webhook_payload import check_webhook

__all__ = [
    "BOOKING_ARGS",
    "calcom_headers",
    "call_object",
    "function_body",
    "function_call_body",
    "retell_headers",
    "webhook_body",
]

#: A booking the agent fills correctly: Thursday 3 December 2037, 15:00 in Berlin.
BOOKING_ARGS: dict[str, Any] = {
    "start": "2037-12-03T15:00:00+01:00",
    "event_type_id": 42,
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": "+4930123456",
    "time_zone": "Europe/Berlin",
}


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


def call_object(
    call_id: str = "call_1", *, agent_id: str = "agent_1", **fields: Any
) -> dict[str, Any]:
    """Retell's call object (``PhoneCallResponse``) as JSON, ``fields`` set on top."""
    call = PhoneCallResponse(
        agent_id=agent_id,
        agent_version=1,
        call_id=call_id,
        call_status=fields.pop("call_status", "ongoing"),
        call_type="phone_call",
        direction=fields.pop("direction", "inbound"),
        from_number=fields.pop("from_number", "+4930123456"),
        to_number=fields.pop("to_number", "+4930654321"),
        **fields,
    )
    return call.to_dict(mode="json", exclude_none=True)


def webhook_body(event: str, call_id: str = "call_1", **fields: Any) -> bytes:
    """A Retell call lifecycle webhook (``call_started``, ``call_ended``, ``call_analyzed``)."""
    return json.dumps({"event": event, "call": call_object(call_id, **fields)}).encode()


def function_body(
    name: str, args: dict[str, Any], *, call_id: str = "call_1", agent_id: str = "agent_1"
) -> bytes:
    """Retell's custom-function request ``{"name", "call", "args"}``; None args left out."""
    document = {
        "name": name,
        "call": call_object(call_id, agent_id=agent_id),
        "args": {k: v for k, v in args.items() if v is not None},
    }
    return json.dumps(document).encode()


def function_call_body(call_id: str = "call_1", **args: Any) -> bytes:
    """A Retell custom-function request for ``book_appointment`` (``BOOKING_ARGS`` updated)."""
    return function_body("book_appointment", BOOKING_ARGS | args, call_id=call_id)
