"""The diff: how a local appointment and a Cal.com booking are compared, bucket by bucket.

Both sides become ``Row``s (uid, start to the second, live or cancelled). Rows are
grouped in time buckets; a bucket whose summary (count and a hash of its rows)
is the same on both sides holds no difference and is not compared row by row.
Nothing here reads the database or calls Cal.com.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bookingguard.monitoring.reconcile.ports import RemoteBooking

__all__ = [
    "CANCELLED",
    "MISMATCH",
    "MISSING",
    "START_TOLERANCE",
    "Difference",
    "Row",
    "bucketed",
    "compare",
    "differing_buckets",
    "normalise",
    "remote_row",
]

#: Cal.com statuses that mean the booking is no longer live.
CANCELLED = frozenset({"cancelled", "rejected"})
#: Starts closer than this are the same start.
START_TOLERANCE = timedelta(seconds=1)
MISSING = "calcom_booking_missing"
MISMATCH = "calcom_booking_mismatch"


@dataclass(frozen=True)
class Row:
    """One booking as both sides are compared: uid, start and whether it is live."""

    uid: str
    start: datetime
    live: bool

    def line(self) -> str:
        return f"{self.uid}|{self.start.isoformat()}|{'live' if self.live else 'cancelled'}"


@dataclass(frozen=True)
class Difference:
    """A local appointment that Cal.com does not confirm as it is."""

    #: ``MISSING`` (none at Cal.com, or cancelled there) or ``MISMATCH`` (start or status).
    alert_type: str
    #: What the alert stores.
    metadata: dict[str, Any]
    #: What the report's sample shows beside the entity.
    sample: dict[str, Any]


def normalise(moment: datetime) -> datetime:
    """``moment`` to the second: what both sides agree on."""
    return moment.replace(microsecond=0)


def remote_row(booking: RemoteBooking) -> Row:
    return Row(booking.uid, normalise(booking.start), booking.status.lower() not in CANCELLED)


def bucketed(rows: Iterable[Row], *, since: datetime, width: timedelta) -> dict[int, list[Row]]:
    """``rows`` by time bucket: bucket ``n`` starts ``n`` widths after ``since``."""
    buckets: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        buckets[int((row.start - since) / width)].append(row)
    return buckets


def _digest(rows: Sequence[Row]) -> tuple[int, str]:
    lines = sorted(row.line() for row in rows)
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


def differing_buckets(local: dict[int, list[Row]], remote: dict[int, list[Row]]) -> list[int]:
    """The buckets, in order, whose rows differ between the two sides."""
    return [
        bucket
        for bucket in sorted(set(local) | set(remote))
        if _digest(local.get(bucket, [])) != _digest(remote.get(bucket, []))
    ]


def compare(ours: Row, theirs: Row | None) -> Difference | None:
    """How Cal.com's booking (None: it has none) differs from a local appointment's row."""
    if theirs is None or (ours.live and not theirs.live):
        reason = "missing" if theirs is None else "cancelled_at_calcom"
        return Difference(MISSING, {"uid": ours.uid, "reason": reason}, {"reason": reason})
    if abs(theirs.start - ours.start) > START_TOLERANCE or theirs.live != ours.live:
        details = {
            "uid": ours.uid,
            "local_start": ours.start.isoformat(),
            "calcom_start": theirs.start.isoformat(),
            "local_live": ours.live,
            "calcom_live": theirs.live,
        }
        difference = "start" if theirs.live == ours.live else "status"
        return Difference(MISMATCH, details, {"difference": difference})
    return None
