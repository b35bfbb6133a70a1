"""Filing calls for a human to review, and the audit log of what reviewers do.

One open item (pending or in progress) per call: filing a call that already has
one merges the new reason into its context and raises its priority if needed.
Priority 1 is the most urgent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Select,
    Table,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from bookingguard.db.models import ManualReviewItem, ReviewAuditLog
from bookingguard.db.types import JSONDocument, UTCDateTime
from bookingguard.errors import BookingGuardError
from bookingguard.review.notes import is_blank

__all__ = [
    "CURSOR_PATTERN",
    "OPEN_STATUSES",
    "PRIORITY_BY_SEVERITY",
    "InvalidCursorError",
    "ResolutionNoteRequiredError",
    "ReviewConflictError",
    "ReviewError",
    "ReviewItemNotFoundError",
    "ReviewPage",
    "audit",
    "audit_trail",
    "claim",
    "dismiss",
    "file_for_review",
    "file_many_for_review",
    "get_item",
    "list_items",
    "open_count",
    "resolve",
]

PRIORITY_BY_SEVERITY: dict[str, int] = {"critical": 1, "warning": 2, "info": 3}
OPEN_STATUSES = ("pending", "in_progress")


def file_for_review(
    session: Session,
    *,
    call_id: int,
    reason: str,
    priority: int,
    now: datetime,
    context: dict[str, Any] | None = None,
) -> ManualReviewItem:
    """Open a review item for ``call_id`` or fold this reason into its open one. Flushes only."""
    item = session.scalars(
        select(ManualReviewItem)
        .where(ManualReviewItem.call_id == call_id, ManualReviewItem.status.in_(OPEN_STATUSES))
        .with_for_update()
    ).first()
    if item is None:
        item = ManualReviewItem(
            call_id=call_id,
            reason=reason,
            priority=priority,
            status="pending",
            context={**(context or {}), "reasons": [reason]},
            created_at=now,
            updated_at=now,
        )
        session.add(item)
        session.flush()
        return item
    merged = dict(item.context or {})
    reasons = list(merged.get("reasons", [item.reason]))
    if reason not in reasons:
        reasons.append(reason)
    merged.update(context or {})
    merged["reasons"] = reasons
    item.context = merged
    item.priority = min(item.priority, priority)
    item.updated_at = now
    session.flush()
    return item


def file_many_for_review(
    session: Session,
    *,
    call_ids: Select[tuple[int]],
    reason: str,
    priority: int,
    now: datetime,
    context: dict[str, Any] | None = None,
) -> int:
    """Set-based ``file_for_review`` for every call ``call_ids`` selects; returns items opened.

    Calls that already have an open item keep it, raised to ``priority`` if that is more
    urgent (their reasons are not merged: one statement for a thousand calls matters more).
    Flushes only.
    """
    queue: Table = ManualReviewItem.__table__  # type: ignore[assignment]
    ids = call_ids.subquery()
    call_id = ids.c[0]
    has_open = exists(
        select(literal(1)).where(queue.c.call_id == call_id, queue.c.status.in_(OPEN_STATUSES))
    )
    session.execute(
        update(queue)
        .where(
            queue.c.status.in_(OPEN_STATUSES),
            queue.c.priority > priority,
            queue.c.call_id.in_(select(call_id)),
        )
        .values(priority=case((queue.c.priority > priority, priority), else_=queue.c.priority))
    )
    document = {**(context or {}), "reasons": [reason]}
    result = session.execute(
        insert(queue)
        .from_select(
            ["call_id", "reason", "priority", "status", "context", "created_at", "updated_at"],
            select(
                call_id,
                literal(reason),
                literal(priority),
                literal("pending"),
                literal(document, JSONDocument),
                literal(now, UTCDateTime()),
                literal(now, UTCDateTime()),
            )
            .where(~has_open, call_id.is_not(None))
            .distinct(),
        )
        .returning(queue.c.id)
    )
    opened = len(result.all())
    session.flush()
    return opened


def audit(
    session: Session,
    *,
    item: ManualReviewItem,
    actor: str,
    action: str,
    now: datetime,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> ReviewAuditLog:
    """Append an audit row in the caller's transaction (so it commits with the change)."""
    row = ReviewAuditLog(
        review_item_id=item.id, actor=actor, action=action, ip=ip, details=details, at=now
    )
    session.add(row)
    session.flush()
    return row


class ReviewError(BookingGuardError):
    """A review action cannot be applied; ``api`` and ``cli`` map the subclasses."""

    code = "review_error"


class ReviewItemNotFoundError(ReviewError):
    code = "review_item_not_found"


class ReviewConflictError(ReviewError):
    """The item's current status does not allow the action (already closed, claimed by another)."""

    code = "review_conflict"


class ResolutionNoteRequiredError(ReviewError):
    code = "resolution_note_required"


class InvalidCursorError(ReviewError):
    code = "invalid_cursor"


@dataclass(frozen=True)
class ReviewPage:
    """One page of the queue and the cursor for the next (``None`` at the end)."""

    items: list[ManualReviewItem]
    next_cursor: str | None


#: ``{priority}.{created_at in µs since the epoch}.{id}``: the keyset of the last item seen.
CURSOR_PATTERN = r"^[1-4]\.[0-9]{1,16}\.[0-9]{1,18}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _encode_cursor(item: ManualReviewItem) -> str:
    return f"{item.priority}.{(item.created_at - _EPOCH) // _MICROSECOND}.{item.id}"


def _decode_cursor(cursor: str) -> tuple[int, datetime, int]:
    if not re.match(CURSOR_PATTERN, cursor):
        raise InvalidCursorError("invalid cursor: pass next_cursor from a previous page")
    priority, micros, item_id = cursor.split(".")
    return int(priority), _EPOCH + int(micros) * _MICROSECOND, int(item_id)


def list_items(
    session: Session,
    *,
    statuses: Sequence[str] = (),
    priorities: Sequence[int] = (),
    cursor: str | None = None,
    limit: int = 50,
) -> ReviewPage:
    """Items filtered by status and priority, most urgent first, then oldest first."""
    query = select(ManualReviewItem)
    if statuses:
        query = query.where(ManualReviewItem.status.in_(statuses))
    if priorities:
        query = query.where(ManualReviewItem.priority.in_(priorities))
    if cursor:
        priority, created_at, item_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                ManualReviewItem.priority > priority,
                and_(
                    ManualReviewItem.priority == priority, ManualReviewItem.created_at > created_at
                ),
                and_(
                    ManualReviewItem.priority == priority,
                    ManualReviewItem.created_at == created_at,
                    ManualReviewItem.id > item_id,
                ),
            )
        )
    query = query.order_by(
        ManualReviewItem.priority, ManualReviewItem.created_at, ManualReviewItem.id
    ).limit(limit + 1)
    rows = list(session.scalars(query))
    if len(rows) > limit:
        return ReviewPage(rows[:limit], _encode_cursor(rows[limit - 1]))
    return ReviewPage(rows, None)


def open_count(session: Session) -> int:
    """How many items wait for a human (pending or in progress)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(ManualReviewItem)
            .where(ManualReviewItem.status.in_(OPEN_STATUSES))
        )
        or 0
    )


def get_item(session: Session, item_id: int, *, for_update: bool = False) -> ManualReviewItem:
    """The item with ``item_id``; ``ReviewItemNotFoundError`` if there is none."""
    query = select(ManualReviewItem).where(ManualReviewItem.id == item_id)
    if for_update:
        query = query.with_for_update()
    item = session.scalars(query).first()
    if item is None:
        raise ReviewItemNotFoundError(f"review item {item_id} not found")
    return item


def audit_trail(session: Session, item_id: int) -> list[ReviewAuditLog]:
    """The item's audit rows, oldest first."""
    return list(
        session.scalars(
            select(ReviewAuditLog)
            .where(ReviewAuditLog.review_item_id == item_id)
            .order_by(ReviewAuditLog.at, ReviewAuditLog.id)
        )
    )


def claim(
    session: Session, item_id: int, *, actor: str, now: datetime, ip: str | None = None
) -> ManualReviewItem:
    """Assign a pending item to ``actor`` (in progress), with its audit row. Flushes only."""
    item = get_item(session, item_id, for_update=True)
    if item.status not in OPEN_STATUSES:
        raise ReviewConflictError(f"review item {item_id} is already {item.status}")
    if item.status == "in_progress" and item.assigned_to not in (None, actor):
        raise ReviewConflictError(f"review item {item_id} is claimed by {item.assigned_to}")
    previous = {"status": item.status, "assigned_to": item.assigned_to}
    item.status = "in_progress"
    item.assigned_to = actor
    item.updated_at = now
    audit(session, item=item, actor=actor, action="claim", now=now, ip=ip, details=previous)
    return item


def _close(
    session: Session,
    item_id: int,
    *,
    status: str,
    action: str,
    actor: str,
    note: str,
    now: datetime,
    ip: str | None,
) -> ManualReviewItem:
    if is_blank(note):
        raise ResolutionNoteRequiredError(f"a resolution note is required to {action} an item")
    item = get_item(session, item_id, for_update=True)
    if item.status not in OPEN_STATUSES:
        raise ReviewConflictError(f"review item {item_id} is already {item.status}")
    previous_status = item.status
    item.status = status
    item.resolved_by = actor
    item.resolved_at = now
    item.resolution_note = note.strip()
    item.updated_at = now
    audit(
        session,
        item=item,
        actor=actor,
        action=action,
        now=now,
        ip=ip,
        details={"from_status": previous_status, "note": item.resolution_note},
    )
    return item


def resolve(
    session: Session,
    item_id: int,
    *,
    actor: str,
    note: str,
    now: datetime,
    ip: str | None = None,
) -> ManualReviewItem:
    """Close an open item as resolved; the note is required. Audited in the same flush."""
    return _close(
        session,
        item_id,
        status="resolved",
        action="resolve",
        actor=actor,
        note=note,
        now=now,
        ip=ip,
    )


def dismiss(
    session: Session,
    item_id: int,
    *,
    actor: str,
    note: str,
    now: datetime,
    ip: str | None = None,
) -> ManualReviewItem:
    """Close an open item as dismissed (not a real problem); the note is required."""
    return _close(
        session,
        item_id,
        status="dismissed",
        action="dismiss",
        actor=actor,
        note=note,
        now=now,
        ip=ip,
    )
