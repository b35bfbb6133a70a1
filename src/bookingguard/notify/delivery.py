"""The outbox delivery worker: claim a due row with a lease, send it, record the send.

A row is claimed by moving its ``next_attempt_at`` past a lease in a committed
UPDATE that only one worker can win, so two workers (``check`` and ``serve``) do
not send the same row. A process killed after the claim leaves the row to be
retried when the lease runs out; a send that fails is retried with exponential
backoff and jitter, and a channel that fails is skipped for the rest of the pass
so it never holds back the others. A successful send records ``alert_sends``
(what the throttle reads) in the same transaction that marks the row sent.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.clock import utc_now
from bookingguard.db.models import AlertSend, NotificationOutbox
from bookingguard.notify.channels import Channel, DeliveryError, OutgoingMessage

__all__ = ["Backoff", "DeliveryStats", "OutboxDelivery"]


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt ``n + 1``: base * 2^(n-1), capped, plus up to ``jitter`` of it."""

    base_seconds: float = 5.0
    max_seconds: float = 900.0
    max_attempts: int = 10
    jitter: float = 0.1

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        seconds = min(self.base_seconds * 2 ** max(attempts - 1, 0), self.max_seconds)
        return timedelta(seconds=seconds * (1 + rng.uniform(0, self.jitter)))


@dataclass
class DeliveryStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0


class OutboxDelivery:
    """Delivers pending outbox rows through the configured channels."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        channels: Mapping[str, Channel],
        *,
        clock: Callable[[], datetime] = utc_now,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        lease: timedelta = timedelta(seconds=60),
        on_result: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._channels = dict(channels)
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._lease = lease
        self._on_result = on_result

    def deliver_due(self, *, limit: int = 100) -> DeliveryStats:
        """One pass over the rows due now; returns what happened."""
        stats = DeliveryStats()
        now = self._clock()
        with self._sessions() as session:
            due = session.execute(
                select(NotificationOutbox.id, NotificationOutbox.channel)
                .where(
                    NotificationOutbox.status == "pending",
                    NotificationOutbox.next_attempt_at <= now,
                )
                .order_by(NotificationOutbox.id)
                .limit(limit)
            ).all()
        down: set[str] = set()
        for outbox_id, channel_name in due:
            if channel_name in down:
                continue
            message = self._claim(outbox_id)
            if message is None:
                continue
            channel = self._channels.get(channel_name)
            if channel is None:
                self._finish_failed(outbox_id, f"channel {channel_name!r} is not configured")
                stats.failed += 1
                continue
            try:
                channel.send(message[0])
            except DeliveryError as exc:
                down.add(channel_name)
                if self._retry(outbox_id, attempts=message[1], error=str(exc)):
                    stats.retried += 1
                else:
                    stats.failed += 1
                self._report(channel_name, ok=False)
                continue
            self._finish_sent(outbox_id, channel_name, message[2])
            stats.sent += 1
            self._report(channel_name, ok=True)
        return stats

    def drain(
        self, *, timeout_seconds: float = 30.0, sleep: Callable[[float], None] = time.sleep
    ) -> DeliveryStats:
        """Deliver until nothing is due now (or the timeout): what ``check`` does before exiting."""
        total = DeliveryStats()
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            stats = self.deliver_due()
            total.sent += stats.sent
            total.retried += stats.retried
            total.failed += stats.failed
            if stats.sent + stats.retried + stats.failed == 0:
                break
            if stats.sent == 0:
                sleep(0.05)
        return total

    def _report(self, channel: str, *, ok: bool) -> None:
        if self._on_result is not None:
            self._on_result(channel, ok)

    def _claim(self, outbox_id: int) -> tuple[OutgoingMessage, int, list[str]] | None:
        now = self._clock()
        with self._sessions.begin() as session:
            result = cast(
                CursorResult[Any],
                session.execute(
                    update(NotificationOutbox)
                    .where(
                        NotificationOutbox.id == outbox_id,
                        NotificationOutbox.status == "pending",
                        NotificationOutbox.next_attempt_at <= now,
                    )
                    .values(
                        next_attempt_at=now + self._lease,
                        attempts=NotificationOutbox.attempts + 1,
                    )
                ),
            )
            if result.rowcount != 1:
                return None
            row = session.get_one(NotificationOutbox, outbox_id)
            message = OutgoingMessage(
                outbox_id=row.id, kind=row.kind, subject=row.subject, payload=dict(row.payload)
            )
            return message, row.attempts, list(row.fingerprints or [])

    def _finish_sent(self, outbox_id: int, channel: str, fingerprints: list[str]) -> None:
        now = self._clock()
        with self._sessions.begin() as session:
            session.execute(
                update(NotificationOutbox)
                .where(NotificationOutbox.id == outbox_id)
                .values(status="sent", sent_at=now, last_error=None)
            )
            if fingerprints:
                session.execute(
                    delete(AlertSend).where(
                        AlertSend.channel == channel, AlertSend.fingerprint.in_(fingerprints)
                    )
                )
                session.execute(
                    insert(AlertSend),
                    [
                        {"fingerprint": fp, "channel": channel, "last_sent_at": now}
                        for fp in dict.fromkeys(fingerprints)
                    ],
                )

    def _retry(self, outbox_id: int, *, attempts: int, error: str) -> bool:
        now = self._clock()
        give_up = attempts >= self._backoff.max_attempts
        with self._sessions.begin() as session:
            session.execute(
                update(NotificationOutbox)
                .where(NotificationOutbox.id == outbox_id)
                .values(
                    status="failed" if give_up else "pending",
                    next_attempt_at=now + self._backoff.delay(attempts, self._rng),
                    last_error=error[:1000],
                )
            )
        return not give_up

    def _finish_failed(self, outbox_id: int, error: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(NotificationOutbox)
                .where(NotificationOutbox.id == outbox_id)
                .values(status="failed", last_error=error)
            )
