"""The transactional outbox: a message is written in the transaction that caused it.

Nothing is sent here. A delivery worker (``monitoring``'s scheduler, ``serve``,
or ``check`` before it exits) reads pending rows after commit and sends them, so a
rolled-back transaction never notifies and a crash never loses a message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bookingguard.db.models import NotificationOutbox

__all__ = ["CHANNELS", "Message", "enqueue"]

#: Every channel a message can go to; a channel with no configuration is skipped at delivery.
CHANNELS = ("slack", "email", "log")


@dataclass(frozen=True)
class Message:
    """What to say, independent of the channel that renders it."""

    kind: str
    subject: str
    severity: str
    body: dict[str, Any] = field(default_factory=dict)
    fingerprints: tuple[str, ...] = ()


def enqueue(
    session: Session,
    message: Message,
    *,
    now: datetime,
    channels: Iterable[str] = CHANNELS,
) -> list[NotificationOutbox]:
    """One outbox row per channel, in the caller's transaction. Flushes, never commits."""
    rows = [
        NotificationOutbox(
            channel=channel,
            kind=message.kind,
            subject=message.subject,
            payload={"severity": message.severity, **message.body},
            fingerprints=list(message.fingerprints),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for channel in channels
    ]
    session.add_all(rows)
    session.flush()
    return rows
