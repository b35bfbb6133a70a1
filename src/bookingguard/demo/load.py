"""Writing the demo: the planned rows in one transaction, then the circuits' history."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, insert, select

from bookingguard.db.bypass import guarantees_suspended
from bookingguard.db.models import Base
from bookingguard.demo.circuits import write_circuits
from bookingguard.demo.plan import APPOINTMENT_KINDS, BYPASS_KINDS, DEFAULT_SHARES, plan_kinds
from bookingguard.demo.rows import RowFactory

__all__ = ["DemoSummary", "ProgressCallback", "count_calls", "load_demo", "reset_data"]

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
    """Write the demo data and return what was written.

    Customers, calls and appointments go in one transaction; the circuits follow,
    through the breaker's store, once that transaction has committed (the store
    takes its own row locks, which SQLite would refuse while the first holds its own).
    """
    rng = random.Random(seed)  # noqa: S311 (demo data, not secrets)
    gen = RowFactory(rng, now, days)
    total_calls = days * calls_per_day
    kinds, counts = plan_kinds(rng, total_calls, shares or DEFAULT_SHARES)
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
    outage = now - timedelta(days=2, hours=rng.randint(1, 10))
    summary.circuits = write_circuits(engine, now=now, outage=outage)
    advance("circuit breakers", steps)
    return summary
