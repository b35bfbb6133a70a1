"""Filing calls for a human to review, and the audit log of what reviewers do.

One open item (pending or in progress) per call: filing a call that already has
one merges the new reason into its context and raises its priority if needed.
Priority 1 is the most urgent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, case, exists, insert, literal, select, update
from sqlalchemy.orm import Session

from bookingguard.db.models import ManualReviewItem, ReviewAuditLog
from bookingguard.db.types import JSONDocument, UTCDateTime

__all__ = ["PRIORITY_BY_SEVERITY", "audit", "file_for_review", "file_many_for_review"]

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
