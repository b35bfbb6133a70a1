"""Realistic synthetic data for a newcomer's first look: ``bookingguard demo``.

Customers, calls over ``days`` days, their appointments, two circuit breakers
with some history, and a controlled, printed share of each inconsistency the
monitor looks for, written past the database-side guarantees (which would
otherwise prevent or correct them). A few inconsistent writes are also made
*with* the guarantees on, so the database's own auto-corrections show up.
Everything is drawn from one ``random.Random(seed)``: the same seed and ``now``
give the same data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, insert, select

from bookingguard.db.bypass import guarantees_suspended
from bookingguard.db.models import Base

__all__ = [
    "DEFAULT_SHARES",
    "DemoSummary",
    "ProgressCallback",
    "count_calls",
    "load_demo",
    "reset_data",
]

#: Share of all calls written with each inconsistency (missing_appointment = phantom).
DEFAULT_SHARES: dict[str, float] = {
    "missing_appointment": 0.02,
    "session_outcome_mismatch": 0.01,
    "missing_direction": 0.015,
    "orphaned_appointment": 0.01,
    "inconsistent_link_status": 0.01,
    "recent_failures": 0.02,
}
AUTO_CORRECTED_SHARE = 0.01
BOOKED_SHARE = 0.45
CANCELLED_SHARE = 0.03

#: Tables emptied by ``--reset``, children first. API tokens are kept.
RESET_ORDER = (
    "review_audit_log",
    "manual_review_queue",
    "notification_outbox",
    "alert_sends",
    "alert_silences",
    "data_consistency_alerts",
    "check_runs",
    "circuit_breaker_transitions",
    "circuit_breaker_states",
    "appointments",
    "calls",
    "customers",
    "webhook_events",
)
ALL_GROUPS = ("direction", "customer_link", "outcome", "appointment_link")

OTHER_OUTCOMES = (
    ("information_only", 35),
    ("callback_requested", 20),
    ("voicemail", 15),
    ("transferred", 10),
    ("abandoned", 10),
    ("spam", 5),
    ("technical_issue", 5),
)
FAILURE_REASONS = (
    "Cal.com answered 503 three times; retries exhausted",
    "slot no longer available",
    "timeout contacting Cal.com; booking lookup found nothing",
    "post-booking validation failed: missing_calcom_booking_id",
)
FIRST_NAMES = (
    "Anna", "Ben", "Carla", "David", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas",
    "Kira", "Luca", "Mila", "Noah", "Olga", "Paul", "Rosa", "Sami", "Tara", "Yusuf",
)  # fmt: skip
LAST_NAMES = (
    "Becker", "Costa", "Dubois", "Engel", "Fischer", "Garcia", "Hansen", "Ivanova",
    "Jensen", "Kowalski", "Larsen", "Meyer", "Novak", "Okafor", "Petrov", "Rossi",
)  # fmt: skip
EVENT_TYPES = (1001, 1002, 1003)

#: ``report(description, done, total)`` after each batch of rows is written.
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class DemoSummary:
    """What ``load_demo`` wrote, for the CLI to print."""

    seed: int
    days: int
    customers: int = 0
    calls: int = 0
    appointments: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    auto_corrected_by_database: int = 0
    circuits: int = 0

    def shares(self) -> dict[str, float]:
        """Each injected inconsistency as a percentage of all calls."""
        return {
            kind: round(100 * count / self.calls, 2) if self.calls else 0.0
            for kind, count in self.injected.items()
        }


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def count_calls(engine: Engine) -> int:
    """How many calls the database holds (the demo refuses to mix into real data)."""
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(_table("calls"))) or 0)


def reset_data(engine: Engine) -> None:
    """Delete every row the demo (or real traffic) writes, keeping API tokens and the schema."""
    with engine.begin() as connection, guarantees_suspended(connection, ALL_GROUPS):
        for name in RESET_ORDER:
            connection.execute(_table(name).delete())


def _insert(
    connection: Connection, table: str, rows: list[dict[str, Any]], *, returning: bool = False
) -> list[int]:
    if not rows:
        return []
    statement = insert(_table(table))
    if not returning:
        connection.execute(statement, rows)
        return []
    result = connection.execute(
        statement.returning(_table(table).c.id, sort_by_parameter_order=True), rows
    )
    return [row[0] for row in result]


def _chunks(rows: list[dict[str, Any]], size: int = 500) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class _Generator:
    def __init__(self, rng: random.Random, now: datetime, days: int) -> None:
        self.rng = rng
        self.now = now
        self.days = days
        self.counter = 0

    def phone(self) -> str:
        return f"+1555{self.rng.randrange(10**7):07d}"

    def customer(self, index: int) -> dict[str, Any]:
        first = self.rng.choice(FIRST_NAMES)
        last = self.rng.choice(LAST_NAMES)
        created = self.now - timedelta(days=self.days + self.rng.uniform(1, 365))
        return {
            "name": f"{first} {last}",
            "phone": self.phone(),
            "email": f"{first}.{last}.{index}@example.com".lower(),
            "created_at": created,
            "updated_at": created,
        }

    def started_at(self, *, within: timedelta | None = None) -> datetime:
        span = within or timedelta(days=self.days)
        return self.now - timedelta(seconds=self.rng.uniform(120, span.total_seconds()))

    def call(
        self, kind: str, customer_id: int, *, within: timedelta | None = None
    ) -> dict[str, Any]:
        self.counter += 1
        started = self.started_at(within=within)
        ended = started + timedelta(seconds=self.rng.randint(45, 600))
        outcome = self.rng.choices(
            [name for name, _ in OTHER_OUTCOMES], [weight for _, weight in OTHER_OUTCOMES]
        )[0]
        row: dict[str, Any] = {
            "retell_call_id": f"demo_call_{self.counter:06d}_{self.rng.randrange(16**8):08x}",
            "customer_id": customer_id,
            "customer_link_status": "linked",
            "customer_linked_at": started,
            "direction": "inbound" if self.rng.random() < 0.85 else "outbound",
            "from_number": self.phone(),
            "to_number": "+15550100200",
            "call_status": "ended",
            "session_outcome": outcome,
            "appointment_made": False,
            "appointment_link_status": "not_applicable",
            "appointment_linked_at": None,
            "booking_failed": False,
            "booking_failure_reason": None,
            "requires_manual_processing": False,
            "started_at": started,
            "ended_at": ended,
            "created_at": started,
            "updated_at": ended,
        }
        booked = {
            "session_outcome": "appointment_booked",
            "appointment_made": True,
            "appointment_link_status": "linked",
            "appointment_linked_at": ended,
        }
        if kind in ("booked", "inconsistent_link_status"):
            row.update(booked)
        if kind == "inconsistent_link_status":
            row["appointment_link_status"] = "unlinked"
        elif kind == "missing_appointment":
            row.update(
                booked, appointment_link_status="pending_creation", appointment_linked_at=None
            )
        elif kind == "auto_corrected":
            row.update(booked, appointment_made=False)
        elif kind == "cancelled":
            row.update(session_outcome="appointment_cancelled", appointment_link_status="unlinked")
        elif kind == "mismatch_flag":
            row.update(booked, session_outcome="callback_requested")
        elif kind == "mismatch_outcome":
            row.update(session_outcome="appointment_booked")
        elif kind == "missing_direction":
            row["direction"] = None
        elif kind == "recent_failures":
            row.update(
                session_outcome="creation_failed",
                appointment_link_status="creation_failed",
                booking_failed=True,
                booking_failure_reason=self.rng.choice(FAILURE_REASONS),
                requires_manual_processing=True,
            )
        return row

    def appointment(
        self, call: dict[str, Any] | None, call_id: int | None, customer_id: int, *, status: str
    ) -> dict[str, Any]:
        self.counter += 1
        created = call["ended_at"] if call else self.started_at()
        starts = created + timedelta(days=self.rng.randint(1, 21), hours=self.rng.randint(0, 8))
        starts = starts.replace(minute=self.rng.choice((0, 30)), second=0, microsecond=0)
        if status == "booked" and starts < self.now:
            status = self.rng.choices(["completed", "no_show"], [9, 1])[0]
        elif status == "booked":
            status = self.rng.choices(["booked", "confirmed"], [1, 2])[0]
        booking_id = 5_000_000 + self.counter
        return {
            "call_id": call_id,
            "customer_id": customer_id,
            "event_type_id": self.rng.choice(EVENT_TYPES),
            "calcom_v2_booking_id": booking_id,
            "calcom_booking_uid": f"demo-{booking_id:x}-{self.rng.randrange(16**6):06x}",
            "starts_at": starts,
            "ends_at": starts + timedelta(minutes=30),
            "status": status,
            "idempotency_key": f"demo:{booking_id}",
            "created_at": created,
            "updated_at": created,
        }


def _plan_kinds(
    rng: random.Random, total: int, shares: dict[str, float]
) -> tuple[list[str], dict[str, int]]:
    """One kind per call: exact counts for the injected ones, the rest drawn by weight."""
    counts = {kind: round(total * share) for kind, share in shares.items()}
    counts["auto_corrected"] = round(total * AUTO_CORRECTED_SHARE)
    kinds: list[str] = []
    for kind, count in counts.items():
        if kind == "session_outcome_mismatch":
            kinds += ["mismatch_flag" if i % 2 else "mismatch_outcome" for i in range(count)]
        elif kind == "orphaned_appointment":
            kinds += ["orphan_unflagged" if i % 2 else "orphan_no_call" for i in range(count)]
        else:
            kinds += [kind] * count
    rest = total - len(kinds)
    if rest < 0:
        raise ValueError("the inconsistency shares add up to more than all calls")
    normal = BOOKED_SHARE + CANCELLED_SHARE
    kinds += rng.choices(
        ["booked", "cancelled", "other"],
        [BOOKED_SHARE, CANCELLED_SHARE, 1 - normal],
        k=rest,
    )
    rng.shuffle(kinds)
    return kinds, counts


#: Call kinds the guarantees would refuse or correct: written with them suspended.
BYPASS_KINDS = frozenset(
    {
        "mismatch_flag",
        "mismatch_outcome",
        "missing_direction",
        "orphan_unflagged",
        "inconsistent_link_status",
    }
)
APPOINTMENT_KINDS = frozenset(
    {"booked", "auto_corrected", "cancelled", "mismatch_flag", "orphan_unflagged",
     "inconsistent_link_status"}
)  # fmt: skip


def load_demo(
    engine: Engine,
    *,
    now: datetime,
    seed: int = 42,
    days: int = 14,
    calls_per_day: int = 80,
    shares: dict[str, float] | None = None,
    report: ProgressCallback | None = None,
) -> DemoSummary:
    """Write the demo data in one transaction and return what was written."""
    rng = random.Random(seed)  # noqa: S311 (demo data, not secrets)
    gen = _Generator(rng, now, days)
    total_calls = days * calls_per_day
    kinds, counts = _plan_kinds(rng, total_calls, shares or DEFAULT_SHARES)
    summary = DemoSummary(seed=seed, days=days)
    summary.injected = {kind: counts[kind] for kind in (shares or DEFAULT_SHARES)}
    summary.auto_corrected_by_database = counts["auto_corrected"]
    steps = total_calls * 2 + max(10, total_calls // 3)
    done = 0

    def advance(description: str, amount: int) -> None:
        nonlocal done
        done += amount
        if report is not None:
            report(description, min(done, steps), steps)

    with engine.begin() as connection:
        customers = [gen.customer(index) for index in range(max(10, total_calls // 3))]
        customer_ids = _insert(connection, "customers", customers, returning=True)
        summary.customers = len(customer_ids)
        advance("customers", len(customer_ids))

        planned: list[tuple[str, dict[str, Any] | None]] = []
        for kind in kinds:
            customer_id = rng.choice(customer_ids)
            if kind == "orphan_no_call":
                planned.append((kind, None))
                continue
            recent = kind == "recent_failures" and rng.random() < 0.5
            within = timedelta(minutes=50) if recent else None
            planned.append((kind, gen.call(kind, customer_id, within=within)))

        with_calls = [(k, row) for k, row in planned if row is not None]
        guarded = [(k, row) for k, row in with_calls if k not in BYPASS_KINDS]
        bypass = [(k, row) for k, row in with_calls if k in BYPASS_KINDS]
        orphans = [k for k, row in planned if row is None]

        def write(batch: list[tuple[str, dict[str, Any]]]) -> None:
            rows = [row for _, row in batch]
            for chunk_start in range(0, len(rows), 500):
                chunk = rows[chunk_start : chunk_start + 500]
                ids = _insert(connection, "calls", chunk, returning=True)
                for row, call_id in zip(chunk, ids, strict=True):
                    row["id"] = call_id
                advance("calls", len(chunk))
            appointments = [
                gen.appointment(
                    row,
                    row["id"],
                    row["customer_id"],
                    status="cancelled" if kind == "cancelled" else "booked",
                )
                for kind, row in batch
                if kind in APPOINTMENT_KINDS
            ]
            for chunk in _chunks(appointments):
                _insert(connection, "appointments", chunk)
                summary.appointments += len(chunk)
                advance("appointments", len(chunk))

        write(guarded)
        with guarantees_suspended(connection, ("direction", "outcome", "appointment_link")):
            write(bypass)
            orphan_rows = [
                gen.appointment(None, None, rng.choice(customer_ids), status="booked")
                for _ in orphans
            ]
            _insert(connection, "appointments", orphan_rows)
            summary.appointments += len(orphan_rows)
        summary.calls = len(guarded) + len(bypass)
        summary.circuits = _write_circuits(connection, gen)
        advance("circuit breakers", steps)
    return summary


def _write_circuits(connection: Connection, gen: _Generator) -> int:
    """Two booking circuits: one recovered from an outage two days ago, one open right now."""
    now = gen.now
    outage = now - timedelta(days=2, hours=gen.rng.randint(1, 10))
    history: Sequence[tuple[str, str, str, str, datetime]] = (
        ("appointment_booking:event_type:1001", "closed", "open", "failure_threshold", outage),
        (
            "appointment_booking:event_type:1001",
            "open",
            "half_open",
            "cooldown_elapsed",
            outage + timedelta(seconds=30),
        ),
        (
            "appointment_booking:event_type:1001",
            "half_open",
            "closed",
            "success_threshold",
            outage + timedelta(seconds=95),
        ),
        (
            "appointment_booking:event_type:1002",
            "closed",
            "open",
            "failure_threshold",
            now - timedelta(minutes=4),
        ),
    )
    versions: dict[str, int] = {}
    transitions = []
    for key, from_state, to_state, reason, at in history:
        versions[key] = versions.get(key, 0) + 1
        transitions.append(
            {
                "circuit_key": key,
                "from_state": from_state,
                "to_state": to_state,
                "reason": reason,
                "at": at,
                "version": versions[key],
            }
        )
    _insert(connection, "circuit_breaker_transitions", transitions)
    opened = now - timedelta(minutes=4)
    states = [
        {
            "circuit_key": "appointment_booking:event_type:1001",
            "state": "closed",
            "failure_count": 0,
            "success_count": 2,
            "last_failure_at": outage,
            "opened_at": outage,
            "closed_at": outage + timedelta(seconds=95),
            "open_until": None,
            "version": versions["appointment_booking:event_type:1001"],
            "forced_open": False,
        },
        {
            "circuit_key": "appointment_booking:event_type:1002",
            "state": "open",
            "failure_count": 3,
            "success_count": 0,
            "last_failure_at": opened,
            "opened_at": opened,
            "closed_at": None,
            "open_until": opened + timedelta(seconds=30),
            "version": versions["appointment_booking:event_type:1002"],
            "forced_open": False,
        },
    ]
    _insert(connection, "circuit_breaker_states", states)
    return len(states)
