"""Cal.com booking webhooks: signature checked on the raw body, bounds checked, then applied once.

Cal.com's delivery is public input (a booker fills in metadata on a booking
page), so before it reaches the database every field we store is bounded to its
column, free of NUL, and every id and moment range-checked: out of range is a
422 naming the field, never a 500 after half a write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import IntegrityError

from bookingguard.api.bounds import (
    NO_NUL,
    BigIntId,
    Int32Id,
    Moment,
    Text20,
    Text64,
    Text128,
    Text500,
)
from bookingguard.api.deps import ServicesDep
from bookingguard.api.problems import (
    WEBHOOK_ERROR_RESPONSES,
    ProblemError,
    parse_json,
    validate_body,
)
from bookingguard.api.signature_limits import signature_refusal
from bookingguard.api.signatures import verify_calcom_signature
from bookingguard.booking.calcom_events import apply_calcom_event
from bookingguard.booking.types import IDEMPOTENCY_METADATA_KEY, RETELL_CALL_METADATA_KEY
from bookingguard.calcom import CalcomWebhook
from bookingguard.calcom.webhooks import HANDLED_TRIGGERS
from bookingguard.db.uow import UnitOfWork

__all__ = ["CalcomDelivery", "router"]

router = APIRouter(tags=["calcom"])

#: Longest value stored from a metadata key, by key: the column it lands in.
_METADATA_COLUMNS = {RETELL_CALL_METADATA_KEY: 128, IDEMPOTENCY_METADATA_KEY: 200}


class CalcomDeliveryPayload(BaseModel):
    """What of a delivery's payload reaches the database, bounded (the rest is ignored)."""

    model_config = ConfigDict(extra="ignore")

    uid: Text128 | None = None
    booking_id: BigIntId | None = Field(default=None, alias="bookingId")
    event_type_id: Int32Id | None = Field(default=None, alias="eventTypeId")
    start_time: Moment | None = Field(default=None, alias="startTime")
    end_time: Moment | None = Field(default=None, alias="endTime")
    status: Text20 | None = None
    reschedule_uid: Text128 | None = Field(default=None, alias="rescheduleUid")
    from_reschedule: Text128 | None = Field(default=None, alias="fromReschedule")
    # Cal.com's own limits: 50 keys, values of up to 500 characters.
    metadata: (
        dict[Text64, Text500 | int | float | bool | list[Any] | dict[str, Any] | None] | None
    ) = Field(default=None, max_length=50)

    @field_validator("metadata")
    @classmethod
    def _fits_columns(cls, value: dict[str, object] | None) -> dict[str, object] | None:
        for key, limit in _METADATA_COLUMNS.items():
            item = (value or {}).get(key)
            if item is not None and len(str(item)) > limit:
                raise ValueError(f"metadata.{key} is longer than {limit} characters")
        return value


def _zoned(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a moment with a time zone (Z or an offset) is required")
    return value


class CalcomDelivery(BaseModel):
    """A Cal.com delivery as far as it is checked before anything is stored.

    ``createdAt`` is required and must carry its zone: Cal.com's documented payload
    always has it (``2023-05-24T09:30:00.538Z``), and it is what the freshness check
    reads. A delivery without it, or with a local time, would skip that check, so a
    replayed old delivery would pass; it is refused instead (422).
    """

    model_config = ConfigDict(extra="ignore")

    trigger_event: str = Field(alias="triggerEvent", max_length=64, pattern=NO_NUL)
    created_at: Annotated[Moment, AfterValidator(_zoned)] = Field(alias="createdAt")
    payload: CalcomDeliveryPayload


def _too_old(created_at: datetime, now: datetime, tolerance_seconds: float) -> bool:
    return abs((now - created_at).total_seconds()) > tolerance_seconds


@router.post(
    "/webhooks/calcom",
    status_code=204,
    responses=WEBHOOK_ERROR_RESPONSES,
    summary="Cal.com booking webhook",
)
async def calcom_webhook(request: Request, services: ServicesDep) -> Response:
    body = await request.body()
    secret = services.settings.calcom.webhook_secret
    if not verify_calcom_signature(
        body,
        request.headers.get("x-cal-signature-256"),
        secret=secret.get_secret_value() if secret is not None else "",
    ):
        raise signature_refusal(request, "missing, malformed or wrong X-Cal-Signature-256")
    document = parse_json(body)
    if isinstance(document, dict):
        trigger = document.get("triggerEvent")
        if isinstance(trigger, str) and trigger not in HANDLED_TRIGGERS:
            return Response(status_code=204)
    delivery = validate_body(CalcomDelivery, document)
    webhook = validate_body(CalcomWebhook, document)
    now = services.clock()
    if _too_old(delivery.created_at, now, services.settings.calcom.webhook_tolerance_seconds):
        raise ProblemError(401, "webhook delivery older than the signature tolerance")

    def store() -> None:
        for attempt in range(2):
            try:
                with UnitOfWork(services.sessions) as uow:
                    apply_calcom_event(uow.session, webhook, now=services.clock())
                    uow.commit()
                return
            except IntegrityError:
                if attempt == 1:
                    raise

    await anyio.to_thread.run_sync(store)
    return Response(status_code=204)
