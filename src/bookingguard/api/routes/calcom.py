"""Cal.com booking webhooks: signature checked on the raw body, then applied once."""

from __future__ import annotations

from datetime import datetime

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import IntegrityError

from bookingguard.api.deps import ServicesDep
from bookingguard.api.problems import (
    WEBHOOK_ERROR_RESPONSES,
    ProblemError,
    parse_json,
    validate_body,
)
from bookingguard.api.signatures import verify_calcom_signature
from bookingguard.booking.calcom_events import apply_calcom_event
from bookingguard.calcom import CalcomWebhook
from bookingguard.calcom.webhooks import HANDLED_TRIGGERS
from bookingguard.db.uow import UnitOfWork

__all__ = ["router"]

router = APIRouter(tags=["calcom"])


def _too_old(created_at: datetime | None, now: datetime, tolerance_seconds: float) -> bool:
    if created_at is None or created_at.tzinfo is None:
        return False
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
        raise ProblemError(401, "missing, malformed or wrong X-Cal-Signature-256")
    document = parse_json(body)
    if isinstance(document, dict):
        trigger = document.get("triggerEvent")
        if isinstance(trigger, str) and trigger not in HANDLED_TRIGGERS:
            return Response(status_code=204)
    webhook = validate_body(CalcomWebhook, document)
    now = services.clock()
    if _too_old(webhook.created_at, now, services.settings.calcom.webhook_tolerance_seconds):
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
