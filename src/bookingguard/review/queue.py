"""Filing calls for a human to review, and the audit log of what reviewers do.

One open item (pending or in progress) per call: filing a call that already has
one merges the new reason into its context and raises its priority if needed.
Priority 1 is the most urgent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bookingguard.db.models import ManualReviewItem, ReviewAuditLog

__all__ = ["PRIORITY_BY_SEVERITY", "audit", "file_for_review"]

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
