"""The reconciliation service: read both sides, diff them, store the findings as alerts.

Findings become alerts like any rule's: ``calcom_booking_missing`` (critical: a
phantom at Cal.com), ``unknown_calcom_booking`` (a live booking that claims our
metadata and that no appointment knows; one made elsewhere, without our metadata, is
no finding, and one stored with source ``calcom`` is known) and
``calcom_booking_mismatch``; critical ones are filed for review.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, or_, select
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.calcom.webhooks import claims_our_metadata
from bookingguard.db.alerts import severity_of
from bookingguard.db.models import NOT_LIVE_APPOINTMENT_STATUSES, Appointment
from bookingguard.db.uow import UnitOfWork
from bookingguard.monitoring.alerting import RuleOutcome
from bookingguard.monitoring.reconcile.diff import (
    MISMATCH,
    MISSING,
    Row,
    bucketed,
    compare,
    differing_buckets,
    normalise,
    remote_row,
)
from bookingguard.monitoring.reconcile.ports import BookingSource, RemoteBooking
from bookingguard.monitoring.store import store_listed
from bookingguard.review.queue import PRIORITY_BY_SEVERITY, file_many_for_review

__all__ = ["PAGE_SIZE", "ReconcileReport", "Reconciler"]

appointments: Table = Appointment.__table__  # type: ignore[assignment]
#: Bookings asked of Cal.com per page of its listing.
PAGE_SIZE = 100


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
        local_buckets = bucketed(
            (Row(uid, start, live) for uid, (_, start, live) in local.items()),
            since=since,
            width=self._bucket,
        )
        remote_buckets = bucketed(
            (remote_row(booking) for booking in remote.values()), since=since, width=self._bucket
        )
        report.buckets = int((until - since) / self._bucket) + 1
        differing = differing_buckets(local_buckets, remote_buckets)
        report.buckets_differing = len(differing)
        listed: dict[str, list[tuple[int, dict[str, Any]]]] = {MISSING: [], MISMATCH: []}
        unknown_candidates: dict[str, RemoteBooking] = {}
        for bucket in differing:
            local_rows = {row.uid: row for row in local_buckets.get(bucket, [])}
            remote_rows = {row.uid: row for row in remote_buckets.get(bucket, [])}
            for uid, row in local_rows.items():
                appointment_id = local[uid][0]
                theirs = remote_rows.get(uid)
                if theirs is None and uid in remote:
                    theirs = remote_row(remote[uid])
                if theirs is None:
                    report.remote_requests += 1
                    found = await self._source.find_booking(uid)
                    theirs = remote_row(found) if found is not None else None
                difference = compare(row, theirs)
                if difference is not None:
                    listed[difference.alert_type].append((appointment_id, difference.metadata))
                    report.findings.setdefault(difference.alert_type, []).append(
                        {
                            "entity_type": "appointment",
                            "entity_id": appointment_id,
                            **difference.sample,
                        }
                    )
            for uid, row in remote_rows.items():
                # A booking made elsewhere (no metadata of ours) is data, not an alarm.
                if uid not in local and row.live and claims_our_metadata(remote[uid].metadata):
                    unknown_candidates[uid] = remote[uid]
        unknown = self._unknown_locally(unknown_candidates)
        for booking in unknown:
            report.findings.setdefault("unknown_calcom_booking", []).append(
                {"entity_type": "calcom_booking", "entity_id": booking.id}
            )
        self._store(report, local, remote, listed[MISSING], listed[MISMATCH], unknown, now)
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
                normalise(row.starts_at),
                row.status not in NOT_LIVE_APPOINTMENT_STATUSES,
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
                MISSING,
                "appointment",
                "appointment booked locally but missing or cancelled at Cal.com",
                missing,
                local_ids,
            ),
            (
                MISMATCH,
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
                            appointments.c.id.in_([entity_id for entity_id, _ in findings]),
                            appointments.c.call_id.is_not(None),
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
