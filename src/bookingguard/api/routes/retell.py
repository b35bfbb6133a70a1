"""Retell: the call lifecycle webhook, and the agent's functions (``retell_functions``).

Both are signed with ``x-retell-signature``; the signature is checked on the raw
body before anything is parsed or stored. The agent's functions never answer
4xx for what the model filled, nor 5xx: the agent always gets a sentence to say.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from bookingguard.api.bounds import (
    NO_NUL,
    EpochMillis,
    Text40,
    Text200,
)
from bookingguard.api.deps import ServicesDep
from bookingguard.api.problems import WEBHOOK_ERROR_RESPONSES, parse_json, validate_body
from bookingguard.api.routes import retell_functions
from bookingguard.api.routes.retell_functions import verify_retell
from bookingguard.booking.calls import CallEvent

__all__ = ["router"]

router = APIRouter(tags=["retell"])
router.include_router(retell_functions.router)

CALL_EVENTS = ("call_started", "call_ended", "call_analyzed")


class RetellCallAnalysis(BaseModel):
    model_config = ConfigDict(extra="ignore")

    custom_analysis_data: dict[str, Any] | None = None


class RetellCall(BaseModel):
    """The call object of a lifecycle webhook (the fields we keep)."""

    model_config = ConfigDict(extra="ignore")

    call_id: str = Field(min_length=1, max_length=128, pattern=NO_NUL)
    direction: Literal["inbound", "outbound"] | None = None
    from_number: Text40 | None = None
    to_number: Text40 | None = None
    call_status: Text40 | None = None
    start_timestamp: EpochMillis | None = None
    end_timestamp: EpochMillis | None = None
    disconnection_reason: Text200 | None = None
    call_analysis: RetellCallAnalysis | None = None


class RetellWebhook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event: Literal["call_started", "call_ended", "call_analyzed"]
    call: RetellCall


def _ms(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value is not None else None


@router.post(
    "/webhooks/retell",
    status_code=204,
    responses=WEBHOOK_ERROR_RESPONSES,
    summary="Retell call lifecycle webhook",
)
async def retell_webhook(request: Request, services: ServicesDep) -> Response:
    body = await request.body()
    verify_retell(request, services, body, request.headers.get("x-retell-signature"))
    document = parse_json(body)
    event_name = document.get("event") if isinstance(document, dict) else None
    if isinstance(event_name, str) and event_name not in CALL_EVENTS:
        return Response(status_code=204)
    webhook = validate_body(RetellWebhook, document)
    analysis = webhook.call.call_analysis
    custom = (analysis.custom_analysis_data if analysis is not None else None) or {}
    raw_outcome = custom.get(services.settings.retell.outcome_field)
    event = CallEvent(
        event=webhook.event,
        retell_call_id=webhook.call.call_id,
        direction=webhook.call.direction,
        from_number=webhook.call.from_number,
        to_number=webhook.call.to_number,
        call_status=webhook.call.call_status,
        started_at=_ms(webhook.call.start_timestamp),
        ended_at=_ms(webhook.call.end_timestamp),
        analysis_outcome=str(raw_outcome) if raw_outcome is not None else None,
        disconnection_reason=webhook.call.disconnection_reason,
    )

    await services.call_events.record(event)
    return Response(status_code=204)
