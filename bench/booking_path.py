"""Benchmark: what bookingguard adds to one booking over a bare Cal.com request.

On PostgreSQL + Redis, against the local Cal.com stand-in: each round makes one
bare ``POST /v2/bookings`` with the client alone, then one booking through
``BookingService.book`` (breaker over Redis, idempotency look-up, the write
transaction, post-booking validation), interleaved so drift hits both alike.
The stand-in serves from a process of its own, so its threads do not compete
for this process's GIL, and the bare request uses a client built from the same
settings as the service's (``CalcomClient.from_settings``).
Prints the median and p99 of each, what bookingguard adds, the SQL statements
and pooled connections taken (the sync engine's and the async engine's; one idle
over 2 s pays a ping) per booking, and the median
added as a ratio of the goal: <= 2 ms added at the median; and as durable commits
(one measured in the same run): <= 3 with the key's claim before Cal.com (two
durable writes a booking: the claim, then the booking recorded in it).

Then the agent's other calls, each interleaved with its bare request: the free slots
(``check_availability``'s ``AppointmentChanges.availability`` against a bare
``GET /v2/slots`` over the same two weeks) and a reschedule of each booking
(``AppointmentChanges.reschedule``: the call's appointment read, the move on Cal.com,
the new appointment and the old one's status in one transaction) against a bare
``POST /v2/bookings/{uid}/reschedule``. Goals at the median, against one durable
commit measured in the same run: availability adds <= 1 commit, a reschedule <= 2.

    .venv/bin/python bench/booking_path.py [--bookings 400] [--warmup 50]

Uses BOOKINGGUARD_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
to create, and finally drop, a database of its own, and BOOKINGGUARD_TEST_REDIS_URL
(default redis://127.0.0.1:6379/12) with keys under a private prefix, deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, event, insert

from bookingguard.booking import BookingRequest, BookingResult, SqlBookingStore
from bookingguard.booking.changes import AVAILABILITY_SPAN
from bookingguard.bootstrap import Services, build_services
from bookingguard.calcom import CalcomClient, NewBooking
from bookingguard.db import make_engine
from bookingguard.db.models import Call
from bookingguard.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.calcom_standin import CalcomStandin

from durable_commit import commit_latency
from scratch_database import scratch_database

REDIS_URL = os.environ.get("BOOKINGGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
FIRST_SLOT = datetime(2027, 1, 4, 8, tzinfo=UTC)
GOAL_SECONDS = 0.002
#: Goal of the booking path, in durable commits added at the median.
BOOKING_GOAL_COMMITS = 3.0
#: Goals of the agent's other calls, in durable commits added at the median.
AVAILABILITY_GOAL_COMMITS = 1.0
RESCHEDULE_GOAL_COMMITS = 2.0


def serve_standin(pipe: Connection) -> None:
    """Child process: run the stand-in, send its base URL and key, serve until told to stop."""
    # The spec checks stay on in the tests; here they would time the stand-in, not us.
    with CalcomStandin(reject_double_booking=False, check_contract=False) as calcom:
        pipe.send((calcom.base_url, calcom.api_key))
        pipe.recv()


def round_trip_latency(engine: Engine, rounds: int) -> list[float]:
    """``SELECT 1`` on an open connection: one network round trip to PostgreSQL."""
    samples = []
    with engine.connect() as connection:
        for _ in range(rounds):
            started = time.perf_counter()
            connection.exec_driver_sql("SELECT 1").all()
            samples.append(time.perf_counter() - started)
    return samples


async def measure_availability(
    services: Services, client: CalcomClient, rounds: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Free slots over the same two weeks: bare ``GET /v2/slots``, then through the service."""
    bare: list[float] = []
    ours: list[float] = []
    after = FIRST_SLOT + timedelta(days=30)
    for i in range(rounds):
        started = time.perf_counter()
        await client.get_slots(
            7, start=after, end=after + AVAILABILITY_SPAN, time_zone="Europe/Berlin"
        )
        bare_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await services.booking.changes.availability(8, time_zone="Europe/Berlin", after=after)
        if i >= warmup:
            bare.append(bare_seconds)
            ours.append(time.perf_counter() - started)
    return bare, ours


async def measure_reschedules(
    services: Services, client: CalcomClient, bare_uids: list[str], warmup: int
) -> tuple[list[float], list[float]]:
    """Each booking moved a year on: the bare booking by uid, the call's through the service."""
    bare: list[float] = []
    ours: list[float] = []
    for i, uid in enumerate(bare_uids):
        start = FIRST_SLOT + timedelta(days=365, minutes=30 * i)
        started = time.perf_counter()
        await client.reschedule_booking(uid, start=start)
        bare_seconds = time.perf_counter() - started
        started = time.perf_counter()
        outcome = await services.booking.changes.reschedule(f"bench-{i}", start=start)
        ours_seconds = time.perf_counter() - started
        if outcome.result is not BookingResult.RESCHEDULED:
            raise SystemExit(f"reschedule {i} failed: {outcome}")
        if i >= warmup:
            bare.append(bare_seconds)
            ours.append(ours_seconds)
    return bare, ours


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:6.3f} ms"


def stats(samples: list[float]) -> str:
    return f"median {ms(statistics.median(samples))}  p99 {ms(percentile(samples, 0.99))}"


async def run(url: str, bookings: int, warmup: int, prefix: str) -> None:
    total = bookings + warmup
    ours, theirs = multiprocessing.Pipe()
    standin = multiprocessing.get_context("spawn").Process(target=serve_standin, args=(theirs,))
    standin.start()
    try:
        base_url, api_key = ours.recv()
        settings = Settings(
            database_url=url,
            redis_url=REDIS_URL,
            circuit_breaker={"redis_key_prefix": prefix},
            calcom={"base_url": base_url, "api_key": api_key},
        )
        engine = make_engine(url)
        with engine.begin() as connection:
            connection.execute(
                insert(Call),
                [{"retell_call_id": f"bench-{i}", "direction": "inbound"} for i in range(total)],
            )
        services = build_services(settings, engine=engine)
        store = services.booking.store
        if not isinstance(store, SqlBookingStore):
            raise SystemExit("the booking path has no SQL store")
        # The booking path's own statements go over the async engine on PostgreSQL.
        engines = {id(e.pool): e for e in (engine, *store.engines)}.values()
        statements = checkouts = driver_statements = 0

        def count_statement(*args: Any) -> None:
            nonlocal statements
            statements += 1

        def count_checkout(*args: Any) -> None:
            nonlocal checkouts
            checkouts += 1

        bare: list[float] = []
        guarded: list[float] = []
        bare_uids: list[str] = []
        async with CalcomClient.from_settings(settings) as client:
            for i in range(total):
                slot = FIRST_SLOT + timedelta(minutes=30 * i)
                started = time.perf_counter()
                created = await client.create_booking(
                    NewBooking(
                        start=slot,
                        event_type_id=7,
                        name="Bare",
                        email="bare@example.com",
                        time_zone="UTC",
                    )
                )
                bare_seconds = time.perf_counter() - started
                bare_uids.append(created.uid)
                request = BookingRequest(
                    retell_call_id=f"bench-{i}",
                    start=slot,
                    event_type_id=8,
                    name="Guarded",
                    email="guarded@example.com",
                    time_zone="UTC",
                )
                if i == warmup:
                    driver_statements = store.driver_statements
                    for counted in engines:
                        event.listen(counted, "before_cursor_execute", count_statement)
                        event.listen(counted, "checkout", count_checkout)
                started = time.perf_counter()
                outcome = await services.booking.book(request)
                guarded_seconds = time.perf_counter() - started
                if not outcome.booked:
                    raise SystemExit(f"booking {i} failed: {outcome}")
                if i >= warmup:
                    bare.append(bare_seconds)
                    guarded.append(guarded_seconds)
            statements += store.driver_statements - driver_statements
            for counted in engines:
                event.remove(counted, "before_cursor_execute", count_statement)
                event.remove(counted, "checkout", count_checkout)
            slots = await measure_availability(services, client, total, warmup)
            moves = await measure_reschedules(services, client, bare_uids, warmup)
        commits = commit_latency(engine, bookings)
        round_trips = round_trip_latency(engine, bookings)
        await services.aclose()
    finally:
        ours.send("stop")
        standin.join(timeout=10)

    median_added = statistics.median(guarded) - statistics.median(bare)
    p99_added = percentile(guarded, 0.99) - percentile(bare, 0.99)
    added = [g - b for g, b in zip(guarded, bare, strict=True)]
    print(f"bookings measured: {len(guarded)} (after {warmup} warm-up), PostgreSQL + Redis")
    print(f"bare Cal.com request   {stats(bare)}")
    print(f"through bookingguard   {stats(guarded)}")
    print(f"added by bookingguard  median {ms(median_added)}  p99 {ms(p99_added)}")
    print(f"paired differences     {stats(added)}")
    print(
        f"SQL statements per booking: {statements / len(guarded):.1f}"
        f"  (pooled connections taken: {checkouts / len(guarded):.1f})"
    )
    print(f"for scale: one durable commit  {stats(commits)}  (a booking makes two)")
    print(f"for scale: one round trip      {stats(round_trips)}")
    verdict = "met" if median_added <= GOAL_SECONDS else "NOT met"
    print(
        f"goal <= 2 ms added at the median: {verdict}"
        f" (median added / goal = {median_added / GOAL_SECONDS:.2f})"
    )
    commit = statistics.median(commits)
    verdict = "met" if median_added <= BOOKING_GOAL_COMMITS * commit else "NOT met"
    print(
        f"booking: added median {ms(median_added)} = {median_added / commit:.2f} durable"
        f" commits ({ms(commit)}); goal <= {BOOKING_GOAL_COMMITS:g}: {verdict}"
    )
    for label, (bare_calls, our_calls), goal in (
        ("check_availability", slots, AVAILABILITY_GOAL_COMMITS),
        ("reschedule", moves, RESCHEDULE_GOAL_COMMITS),
    ):
        call_added = statistics.median(our_calls) - statistics.median(bare_calls)
        print(f"{label}: bare {stats(bare_calls)}")
        print(f"{label}: ours {stats(our_calls)}")
        verdict = "met" if call_added <= goal * commit else "NOT met"
        print(
            f"{label}: added median {ms(call_added)} = {call_added / commit:.2f} durable"
            f" commits ({ms(commit)}); goal <= {goal:g}: {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    options = parser.parse_args()
    prefix = f"bgbench:{uuid.uuid4().hex[:8]}:"
    try:
        with scratch_database("booking") as url:
            asyncio.run(run(url, options.bookings, options.warmup, prefix))
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    main()
