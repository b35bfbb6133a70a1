"""Benchmark: the booking path's writes under the link functions of revision 0007 and 0009.

Revision 0009 gave PostgreSQL's link functions a branch for one call, whose statements
keep their plans (0007's matched ``c.id = ANY(ids)`` and were planned on every call).
Both definitions run in one process on one database, swapped every block of
``--block`` bookings so drift hits both alike: each booking's claim, write and
read-back through ``SqlBookingStore``, then a reschedule of it
(``reschedule_appointment``: the new appointment, the call's link and the old one's
status in one statement). Prints the medians under each, the time 0009 saves per
booking and per reschedule, and one durable commit measured in the same run for scale.

    .venv/bin/python bench/link_functions.py [--blocks 30] [--block 120]

Uses BOOKINGGUARD_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
to create, and finally drop, a database of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.orm import sessionmaker

from bookingguard.booking import SqlBookingStore
from bookingguard.booking.store import NewAppointment, NewClaim, ReadBack
from bookingguard.db import make_engine
from bookingguard.db.ddl import install_live_definition
from bookingguard.db.models import NOT_LIVE_APPOINTMENT_STATUSES, Call
from durable_commit import commit_latency
from scratch_database import scratch_database

FIRST_SLOT = datetime(2027, 1, 4, 8, tzinfo=UTC)
REVISIONS = (7, 9)
#: Bookings of each block left out of the figures: the swapped functions plan afresh.
SETTLE = 20


async def read_it(_appointment_id: int, read: ReadBack) -> None:
    """The post-booking read-back, as the validator makes it."""
    await read()


async def run(url: str, blocks: int, block: int) -> None:
    engine = make_engine(url)
    total = blocks * block
    with engine.begin() as connection:
        connection.execute(
            insert(Call),
            [{"retell_call_id": f"bench-{i}", "direction": "inbound"} for i in range(total)],
        )
    store = SqlBookingStore(sessionmaker(engine))
    now = datetime.now(UTC)
    bookings: dict[int, list[float]] = {revision: [] for revision in REVISIONS}
    moves: dict[int, list[float]] = {revision: [] for revision in REVISIONS}
    for number in range(blocks):
        revision = REVISIONS[number % len(REVISIONS)]
        with engine.begin() as connection:
            install_live_definition(
                connection, not_live=NOT_LIVE_APPOINTMENT_STATUSES, as_of=revision
            )
        for index in range(number * block, (number + 1) * block):
            start = FIRST_SLOT + timedelta(minutes=30 * index)
            call = f"bench-{index}"
            started = time.perf_counter()
            claimed = await store.claim(
                NewClaim(
                    retell_call_id=call, key=f"k-{index}", event_type_id=8, starts_at=start, now=now
                )
            )
            await store.write_and_link(
                _appointment(claimed.call_id, index, start, now, key=f"k-{index}"), read_it
            )
            booked = time.perf_counter() - started
            current = await store.latest_appointment(call)
            if current is None:
                raise SystemExit(f"booking {index} was not stored")
            moved = start + timedelta(days=365)
            started = time.perf_counter()
            await store.reschedule_appointment(
                current.appointment_id,
                _appointment(claimed.call_id, total + index, moved, now, key=f"r-{index}"),
            )
            rescheduled = time.perf_counter() - started
            if index - number * block >= SETTLE:
                bookings[revision].append(booked)
                moves[revision].append(rescheduled)
    await store.aclose()
    commit = statistics.median(commit_latency(engine, 400))
    engine.dispose()
    ms = 1000
    print(f"bookings per revision: {len(bookings[9])}, in blocks of {block} (PostgreSQL)")
    print(f"for scale: one durable commit  median {commit * ms:.3f} ms")
    for label, figures in (("booking (claim, write, read-back)", bookings), ("reschedule", moves)):
        before, after = (statistics.median(figures[revision]) for revision in REVISIONS)
        print(
            f"{label}: 0007 {before * ms:.3f} ms, 0009 {after * ms:.3f} ms;"
            f" saved {(before - after) * ms:.3f} ms = {(before - after) / commit:.2f}"
            f" durable commits (0009 / 0007 = {after / before:.2f})"
        )


def _appointment(
    call_id: int, booking_id: int, start: datetime, now: datetime, *, key: str
) -> NewAppointment:
    return NewAppointment(
        call_id=call_id,
        event_type_id=8,
        calcom_v2_booking_id=booking_id + 1,
        calcom_booking_uid=f"uid-{booking_id}",
        starts_at=start,
        ends_at=start + timedelta(minutes=30),
        idempotency_key=key,
        now=now,
        status="booked",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--block", type=int, default=120)
    options = parser.parse_args()
    if options.block <= SETTLE or options.blocks < len(REVISIONS):
        parser.error(f"--block must exceed {SETTLE} and --blocks be at least {len(REVISIONS)}")
    with scratch_database("links") as url:
        asyncio.run(run(url, options.blocks, options.block))


if __name__ == "__main__":
    main()
