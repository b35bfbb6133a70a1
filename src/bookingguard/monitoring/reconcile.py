"""Reconciliation with Cal.com: local appointments against Cal.com bookings in a window.

As data-diff does, both sides are summarised per time bucket (count and a hash of
uid, start and live/cancelled status); only buckets whose summaries differ are
compared row by row, and only uids missing from Cal.com's listing are looked up
one by one. A quiet day therefore costs the listing pages and nothing more.
Bookings younger than the grace period are in flight and left alone.

Findings become alerts like any rule's: ``calcom_booking_missing`` (critical: a
phantom at Cal.com), ``unknown_calcom_booking`` and ``calcom_booking_mismatch``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Table, or_, select
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db.alerts import severity_of
from bookingguard.db.models import Appointment
from bookingguard.db.uow import UnitOfWork
from bookingguard.monitoring.alerting import RuleOutcome
from bookingguard.monitoring.store import store_listed
from bookingguard.review.queue import PRIORITY_BY_SEVERITY, file_many_for_review

__all__ = [
    "BookingLister",
    "BookingSource",
    "ClientBookingSource",
    "InMemoryBookingSource",
    "ReconcileReport",
    "Reconciler",
    "RemoteBooking",
]

appointments: Table = Appointment.__table__  # type: ignore[assignment]
CANCELLED = frozenset({"cancelled", "rejected"})
PAGE_SIZE = 100
START_TOLERANCE = timedelta(seconds=1)


class RemoteBooking(Protocol):
    """What reconciliation reads of a Cal.com booking."""

    @property
    def id(self) -> int: ...

    @property
    def uid(self) -> str: ...

    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime: ...

    @property
    def status(self) -> str: ...

    @property
    def created_at(self) -> datetime | None: ...


class BookingSource(Protocol):
    """Cal.com's bookings, as reconciliation needs them: a window page by page, one by uid."""

    async def list_page(
        self, *, after_start: datetime, before_end: datetime, take: int, skip: int
    ) -> tuple[Sequence[RemoteBooking], bool]:
        """One page of bookings starting in the window, and whether another page follows."""
        ...

    async def find_booking(self, uid: str) -> RemoteBooking | None:
        """The booking with ``uid``, or None if Cal.com has none."""
        ...


class BookingPageLike(Protocol):
    @property
    def bookings(self) -> Sequence[RemoteBooking]: ...

    @property
    def has_next_page(self) -> bool: ...


class BookingLister(Protocol):
    """The part of a Cal.com client an adapter needs (``bookingguard.calcom.CalcomClient``)."""

    async def list_bookings(
        self,
        *,
        after_start: datetime | None = None,
        before_end: datetime | None = None,
        take: int = 100,
        skip: int = 0,
    ) -> BookingPageLike: ...

    async def get_booking(self, uid: str) -> RemoteBooking: ...


class ClientBookingSource:
    """``BookingSource`` over a Cal.com client; ``not_found`` is its "no such booking" error."""

    def __init__(self, client: BookingLister, *, not_found: type[Exception]) -> None:
        self._client = client
        self._not_found = not_found

    async def list_page(
        self, *, after_start: datetime, before_end: datetime, take: int, skip: int
    ) -> tuple[Sequence[RemoteBooking], bool]:
        page = await self._client.list_bookings(
            after_start=after_start, before_end=before_end, take=take, skip=skip
        )
        return page.bookings, page.has_next_page

    async def find_booking(self, uid: str) -> RemoteBooking | None:
        try:
            return await self._client.get_booking(uid)
        except self._not_found:
            return None


@dataclass(frozen=True)
class _Row:
    uid: str
    start: datetime
    live: bool

    def line(self) -> str:
        return f"{self.uid}|{self.start.isoformat()}|{'live' if self.live else 'cancelled'}"


@dataclass
class ReconcileReport:
    """What one reconciliation compared and found."""

    window_since: datetime
    window_until: datetime
    buckets: int = 0
    buckets_differing: int = 0
    remote_requests: int = 0
    local_count: int = 0
    remote_count: int = 0
    findings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    outcomes: list[RuleOutcome] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": {
                "since": self.window_since.isoformat(),
                "until": self.window_until.isoformat(),
            },
            "buckets": self.buckets,
            "buckets_differing": self.buckets_differing,
            "remote_requests": self.remote_requests,
            "local_count": self.local_count,
            "remote_count": self.remote_count,
            "findings": {
                name: {"severity": severity_of(name), "count": len(items), "samples": items[:10]}
                for name, items in self.findings.items()
            },
        }


def _normalise(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _remote_row(booking: RemoteBooking) -> _Row:
    return _Row(booking.uid, _normalise(booking.start), booking.status.lower() not in CANCELLED)


def _bucket_of(moment: datetime, since: datetime, width: timedelta) -> int:
    return int((moment - since) / width)


def _digest(rows: Sequence[_Row]) -> tuple[int, str]:
    lines = sorted(row.line() for row in rows)
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


class Reconciler:
    """Compares local appointments with Cal.com bookings and stores the differences as alerts."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        source: BookingSource,
        *,
        clock: Callable[[], datetime],
        grace: timedelta = timedelta(minutes=10),
        bucket: timedelta = timedelta(hours=6),
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._sessions = sessions
        self._source = source
        self._clock = clock
        self._grace = grace
        self._bucket = bucket
        self._page_size = page_size

    async def reconcile(self, *, since: datetime, until: datetime) -> ReconcileReport:
        """Compare bookings starting in [since, until); store findings; return the report."""
        now = self._clock()
        report = ReconcileReport(window_since=since, window_until=until)
        cutoff = now - self._grace
        local = self._local(since, until, cutoff)
        remote = await self._remote(since, until, cutoff, report)
        report.local_count, report.remote_count = len(local), len(remote)
        local_buckets: dict[int, list[_Row]] = defaultdict(list)
        remote_buckets: dict[int, list[_Row]] = defaultdict(list)
        for uid, (_, start, live) in local.items():
            local_buckets[_bucket_of(start, since, self._bucket)].append(_Row(uid, start, live))
        for booking in remote.values():
            row = _remote_row(booking)
            remote_buckets[_bucket_of(row.start, since, self._bucket)].append(row)
        report.buckets = int((until - since) / self._bucket) + 1
        differing = [
            b
            for b in sorted(set(local_buckets) | set(remote_buckets))
            if _digest(local_buckets.get(b, [])) != _digest(remote_buckets.get(b, []))
        ]
        report.buckets_differing = len(differing)
        missing: list[tuple[int, dict[str, Any]]] = []
        mismatched: list[tuple[int, dict[str, Any]]] = []
        unknown_candidates: dict[str, RemoteBooking] = {}
        for bucket in differing:
            local_rows = {row.uid: row for row in local_buckets.get(bucket, [])}
            remote_rows = {row.uid: row for row in remote_buckets.get(bucket, [])}
            for uid, row in local_rows.items():
                appointment_id = local[uid][0]
                theirs = remote_rows.get(uid)
                if theirs is None and uid in remote:
                    theirs = _remote_row(remote[uid])
                if theirs is None:
                    report.remote_requests += 1
                    found = await self._source.find_booking(uid)
                    theirs = _remote_row(found) if found is not None else None
                keyed = {"entity_type": "appointment", "entity_id": appointment_id}
                if theirs is None or (row.live and not theirs.live):
                    reason = "missing" if theirs is None else "cancelled_at_calcom"
                    missing.append((appointment_id, {"uid": uid, "reason": reason}))
                    report.findings.setdefault("calcom_booking_missing", []).append(
                        {**keyed, "reason": reason}
                    )
                elif abs(theirs.start - row.start) > START_TOLERANCE or theirs.live != row.live:
                    details = {
                        "uid": uid,
                        "local_start": row.start.isoformat(),
                        "calcom_start": theirs.start.isoformat(),
                        "local_live": row.live,
                        "calcom_live": theirs.live,
                    }
                    mismatched.append((appointment_id, details))
                    report.findings.setdefault("calcom_booking_mismatch", []).append(
                        {**keyed, "difference": "start" if theirs.live == row.live else "status"}
                    )
            for uid, row in remote_rows.items():
                if uid not in local and row.live:
                    unknown_candidates[uid] = remote[uid]
        unknown = self._unknown_locally(unknown_candidates)
        for booking in unknown:
            report.findings.setdefault("unknown_calcom_booking", []).append(
                {"entity_type": "calcom_booking", "entity_id": booking.id}
            )
        self._store(report, local, remote, missing, mismatched, unknown, now)
        return report

    def _local(
        self, since: datetime, until: datetime, cutoff: datetime
    ) -> dict[str, tuple[int, datetime, bool]]:
        with self._sessions() as session:
            rows = session.execute(
                select(
                    appointments.c.id,
                    appointments.c.calcom_booking_uid,
                    appointments.c.starts_at,
                    appointments.c.status,
                ).where(
                    appointments.c.calcom_booking_uid.is_not(None),
                    appointments.c.starts_at >= since,
                    appointments.c.starts_at < until,
                    # Cal.com's beforeEnd filters on the end: the same edge on both sides.
                    or_(appointments.c.ends_at.is_(None), appointments.c.ends_at <= until),
                    appointments.c.created_at <= cutoff,
                )
            ).all()
        return {
            str(row.calcom_booking_uid): (
                int(row.id),
                _normalise(row.starts_at),
                row.status != "cancelled",
            )
            for row in rows
        }

    async def _remote(
        self, since: datetime, until: datetime, cutoff: datetime, report: ReconcileReport
    ) -> dict[str, RemoteBooking]:
        bookings: dict[str, RemoteBooking] = {}
        skip = 0
        while True:
            report.remote_requests += 1
            page, more = await self._source.list_page(
                after_start=since, before_end=until, take=self._page_size, skip=skip
            )
            for booking in page:
                if booking.created_at is not None and booking.created_at > cutoff:
                    continue
                if since <= booking.start < until and booking.end <= until:
                    bookings[booking.uid] = booking
            if not more or not page:
                return bookings
            skip += len(page)

    def _unknown_locally(self, candidates: dict[str, RemoteBooking]) -> list[RemoteBooking]:
        if not candidates:
            return []
        with self._sessions() as session:
            known = set(
                session.scalars(
                    select(appointments.c.calcom_booking_uid).where(
                        appointments.c.calcom_booking_uid.in_(list(candidates))
                    )
                )
            )
        return [booking for uid, booking in sorted(candidates.items()) if uid not in known]

    def _store(
        self,
        report: ReconcileReport,
        local: dict[str, tuple[int, datetime, bool]],
        remote: dict[str, RemoteBooking],
        missing: list[tuple[int, dict[str, Any]]],
        mismatched: list[tuple[int, dict[str, Any]]],
        unknown: list[RemoteBooking],
        now: datetime,
    ) -> None:
        local_ids = [entry[0] for entry in local.values()]
        groups: list[tuple[str, str, str, list[tuple[int, dict[str, Any]]], list[int]]] = [
            (
                "calcom_booking_missing",
                "appointment",
                "appointment booked locally but missing or cancelled at Cal.com",
                missing,
                local_ids,
            ),
            (
                "calcom_booking_mismatch",
                "appointment",
                "appointment start or status differs from Cal.com",
                mismatched,
                local_ids,
            ),
            (
                "unknown_calcom_booking",
                "calcom_booking",
                "Cal.com booking unknown locally",
                [(b.id, {"uid": b.uid, "start": b.start.isoformat()}) for b in unknown],
                [b.id for b in remote.values()],
            ),
        ]
        with UnitOfWork(self._sessions) as uow:
            for alert_type, entity_type, description, findings, scope in groups:
                stored = store_listed(
                    uow.session,
                    alert_type=alert_type,
                    severity=severity_of(alert_type),
                    entity_type=entity_type,
                    description=description,
                    findings=findings,
                    scope=scope,
                    now=now,
                )
                filed = 0
                if findings and severity_of(alert_type) == "critical":
                    filed = file_many_for_review(
                        uow.session,
                        call_ids=select(appointments.c.call_id).where(
                            appointments.c.id.in_([entity_id for entity_id, _ in findings])
                        ),
                        reason=alert_type,
                        priority=PRIORITY_BY_SEVERITY["critical"],
                        now=now,
                        context={"source": "reconcile", "alert_type": alert_type},
                    )
                report.outcomes.append(
                    RuleOutcome(
                        alert_type=alert_type,
                        severity=severity_of(alert_type),
                        entity_type=entity_type,
                        count=len(findings),
                        samples=report.findings.get(alert_type, [])[:10],
                        opened=stored.opened,
                        resolved=stored.resolved,
                        review_filed=filed,
                    )
                )
            uow.commit()


@dataclass(frozen=True)
class _MemoryBooking:
    id: int
    uid: str
    start: datetime
    end: datetime
    status: str
    created_at: datetime | None = None


class InMemoryBookingSource:
    """A ``BookingSource`` over a list, counting requests (for unit tests and demos)."""

    def __init__(self) -> None:
        self.bookings: dict[str, _MemoryBooking] = {}
        self.requests = 0

    def add(
        self,
        *,
        id: int,
        uid: str,
        start: datetime,
        status: str = "accepted",
        created_at: datetime | None = None,
    ) -> None:
        self.bookings[uid] = _MemoryBooking(
            id, uid, start, start + timedelta(minutes=30), status, created_at
        )

    async def list_page(
        self, *, after_start: datetime, before_end: datetime, take: int, skip: int
    ) -> tuple[Sequence[RemoteBooking], bool]:
        self.requests += 1
        matching = sorted(
            (b for b in self.bookings.values() if after_start <= b.start < before_end),
            key=lambda b: (b.start, b.id),
        )
        page = matching[skip : skip + take]
        return page, skip + take < len(matching)

    async def find_booking(self, uid: str) -> RemoteBooking | None:
        self.requests += 1
        return self.bookings.get(uid)
