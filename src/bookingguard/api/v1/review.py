"""``/api/v1/review-queue``: list, show, claim, resolve and dismiss review items.

Every action runs in one unit of work with its audit row (actor = the token's
name, the client IP, the details, the time): both commit or neither does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from bookingguard.api.auth import client_ip, require_scope
from bookingguard.api.bounds import VISIBLE_TEXT
from bookingguard.api.context import OperatorContext, operator_context
from bookingguard.api.problem_details import problem_responses
from bookingguard.db.models import ManualReviewItem, ReviewAuditLog
from bookingguard.db.uow import UnitOfWork
from bookingguard.review import queue
from bookingguard.tokens import Principal

__all__ = ["ReviewItemOut", "ReviewPageOut", "router"]

ReviewStatus = Literal["pending", "in_progress", "resolved", "dismissed"]

router = APIRouter(prefix="/review-queue", tags=["review queue"])


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    actor: str
    action: str
    ip: str | None
    details: dict[str, Any] | None
    at: datetime


class ReviewItemOut(BaseModel):
    """One item of the manual review queue."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    call_id: int
    reason: str
    priority: int = Field(ge=1, le=4, description="1 is the most urgent")
    status: ReviewStatus
    context: dict[str, Any] | None
    assigned_to: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_note: str | None
    created_at: datetime
    updated_at: datetime


class ReviewItemDetailOut(ReviewItemOut):
    audit: list[AuditEntryOut]


class ReviewPageOut(BaseModel):
    items: list[ReviewItemOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class ResolutionIn(BaseModel):
    # Something visible: not only white space, control or zero-width format characters.
    note: str = Field(min_length=1, max_length=5000, pattern=VISIBLE_TEXT, description="Required")


def _item_out(item: ManualReviewItem) -> ReviewItemOut:
    return ReviewItemOut.model_validate(item)


def _detail_out(item: ManualReviewItem, trail: list[ReviewAuditLog]) -> ReviewItemDetailOut:
    return ReviewItemDetailOut.model_validate(
        {
            **ReviewItemOut.model_validate(item).model_dump(),
            "audit": [AuditEntryOut.model_validate(row) for row in trail],
        }
    )


def _http_error(exc: queue.ReviewError) -> HTTPException:
    status = {
        queue.ReviewItemNotFoundError: 404,
        queue.ReviewConflictError: 409,
        queue.ResolutionNoteRequiredError: 422,
        queue.InvalidCursorError: 400,
    }.get(type(exc), 400)
    return HTTPException(status_code=status, detail=exc.message)


Context = Annotated[OperatorContext, Depends(operator_context)]
Reader = Annotated[Principal, Depends(require_scope("read"))]
Operator = Annotated[Principal, Depends(require_scope("operate"))]
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("", response_model=ReviewPageOut, summary="List review items")
def list_review_items(
    context: Context,
    _: Reader,
    status: Annotated[list[ReviewStatus] | None, Query()] = None,
    priority: Annotated[list[Annotated[int, Field(ge=1, le=4)]] | None, Query()] = None,
    cursor: Annotated[
        str | None, Query(pattern=queue.CURSOR_PATTERN, description="next_cursor of a page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReviewPageOut:
    """Items by priority (1 first), then oldest first; filter by status and priority."""
    try:
        with UnitOfWork(context.sessions) as uow:
            page = queue.list_items(
                uow.session,
                statuses=status or (),
                priorities=priority or (),
                cursor=cursor,
                limit=limit,
            )
            return ReviewPageOut(
                items=[_item_out(item) for item in page.items], next_cursor=page.next_cursor
            )
    except queue.ReviewError as exc:
        raise _http_error(exc) from None


@router.get(
    "/{item_id}",
    response_model=ReviewItemDetailOut,
    responses=problem_responses(404),
    summary="Show a review item and its audit trail",
)
def show_review_item(context: Context, _: Reader, item_id: ItemId) -> ReviewItemDetailOut:
    """One item with its audit trail, oldest entry first."""
    try:
        with UnitOfWork(context.sessions) as uow:
            item = queue.get_item(uow.session, item_id)
            return _detail_out(item, queue.audit_trail(uow.session, item_id))
    except queue.ReviewError as exc:
        raise _http_error(exc) from None


def _act(
    context: OperatorContext,
    request: Request,
    principal: Principal,
    item_id: int,
    action: str,
    note: str | None = None,
) -> ReviewItemDetailOut:
    try:
        with UnitOfWork(context.sessions) as uow:
            now = context.clock()
            ip = client_ip(request)
            if action == "claim":
                queue.claim(uow.session, item_id, actor=principal.name, now=now, ip=ip)
            else:
                close = queue.resolve if action == "resolve" else queue.dismiss
                close(uow.session, item_id, actor=principal.name, note=note or "", now=now, ip=ip)
            uow.commit()
            item = queue.get_item(uow.session, item_id)
            return _detail_out(item, queue.audit_trail(uow.session, item_id))
    except queue.ReviewError as exc:
        raise _http_error(exc) from None


@router.post(
    "/{item_id}/claim",
    response_model=ReviewItemDetailOut,
    responses=problem_responses(404, 409),
    summary="Claim a review item",
)
def claim_review_item(
    context: Context, principal: Operator, request: Request, item_id: ItemId
) -> ReviewItemDetailOut:
    """Assign the item to the calling token (status in_progress); audited."""
    return _act(context, request, principal, item_id, "claim")


@router.post(
    "/{item_id}/resolve",
    response_model=ReviewItemDetailOut,
    responses=problem_responses(400, 404, 409, 413),
    summary="Resolve a review item",
)
def resolve_review_item(
    context: Context,
    principal: Operator,
    request: Request,
    item_id: ItemId,
    body: Annotated[ResolutionIn, Body()],
) -> ReviewItemDetailOut:
    """Close the item as resolved; a resolution note is required (422 without). Audited."""
    return _act(context, request, principal, item_id, "resolve", body.note)


@router.post(
    "/{item_id}/dismiss",
    response_model=ReviewItemDetailOut,
    responses=problem_responses(400, 404, 409, 413),
    summary="Dismiss a review item",
)
def dismiss_review_item(
    context: Context,
    principal: Operator,
    request: Request,
    item_id: ItemId,
    body: Annotated[ResolutionIn, Body()],
) -> ReviewItemDetailOut:
    """Close the item as not a problem; a note saying why is required. Audited."""
    return _act(context, request, principal, item_id, "dismiss", body.note)
