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

Last, the database's own share, the floor under those goals: the statements a booking
sends (the claim, the write that fills it and links the call, and post-booking
validation's read-back) and those a reschedule sends (the call's appointment read, then
the new appointment, the link and the old status in one statement), run back to back on
one bare psycopg connection in autocommit: no pool, Redis or Cal.com around them, only
their parameters built. Each is printed in durable commits beside its goal, with a bare
Redis round trip for scale (each call asks the breaker for admission there once). A
goal below its floor could be met by nothing the service does; above it, the margin is
what the service may spend around the statements (pool, Redis, breaker, Python). The
floor is measured again with the database's guarantees off (no trigger fires, no
foreign key is checked: ``session_replication_role = replica``, which needs a
superuser), to show what the statements and their commits cost by themselves.

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

import psycopg
import redis
from sqlalchemy import Engine, event, insert
from sqlalchemy.sql import ClauseElement

from bookingguard.booking import BookingRequest, BookingResult, SqlBookingStore
from bookingguard.booking.changes import AVAILABILITY_SPAN
from bookingguard.bootstrap import Services, build_services
from bookingguard.calcom import CalcomClient, NewBooking
from bookingguard.db import make_engine
from bookingguard.db.booking_queries.postgresql import (
    CLAIM,
    FILL_AND_LINK,
    INSERT_LINK_AND_RESCHEDULE,
)
from bookingguard.db.booking_queries.rows import NewAppointment, NewClaim
from bookingguard.db.booking_queries.statements import LATEST_OF_CALL, READ_BACK_BY_ID
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


def redis_round_trip_latency(rounds: int) -> list[float]:
    """``PING`` on one open connection: one network round trip to Redis."""
    client = redis.Redis.from_url(REDIS_URL)
    samples = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            client.ping()
            samples.append(time.perf_counter() - started)
    finally:
        client.close()
    return samples


def round_trip_latency(engine: Engine, rounds: int) -> list[float]:
    """``SELECT 1`` on an open connection: one network round trip to PostgreSQL."""
    samples = []
    with engine.connect() as connection:
        for _ in range(rounds):
            started = time.perf_counter()
            connection.exec_driver_sql("SELECT 1").all()
            samples.append(time.perf_counter() - started)
    return samples


def database_floor(
    engine: Engine, rounds: int, *, triggers: bool = True
) -> tuple[list[float], list[float]]:
    """The booking's and the reschedule's statements alone, on one bare connection.

    Calls of their own (``floor-<i>``, or ``bare-floor-<i>`` without ``triggers``), each
    booked once, then each booking moved. Without ``triggers`` the connection runs with
    ``session_replication_role = replica`` (a superuser's setting): no trigger fires
    and no foreign key is checked, so the database's guarantees are off and only the
    statements' own work and commits remain.
    """
    name = "floor" if triggers else "bare-floor"
    ids = 10**9 if triggers else 3 * 10**9
    with engine.begin() as connection:
        connection.execute(
            insert(Call),
            [{"retell_call_id": f"{name}-{i}", "direction": "inbound"} for i in range(rounds)],
        )
    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        if not isinstance(driver, psycopg.Connection):
            raise SystemExit(f"not a psycopg connection: {driver!r}")
        driver.autocommit = True
        if not triggers:
            driver.execute("SET session_replication_role = replica")

        statements = (
            CLAIM,
            FILL_AND_LINK,
            READ_BACK_BY_ID,
            LATEST_OF_CALL,
            INSERT_LINK_AND_RESCHEDULE,
        )
        compiled_once = {s: s.compile(dialect=engine.dialect) for s in statements}

        def first(statement: ClauseElement, params: dict[str, Any]) -> Any:
            compiled = compiled_once[statement]
            bound = dict(compiled.construct_params(params) or {})
            return driver.execute(compiled.string, bound).fetchone()

        now = datetime.now(UTC)
        bookings: list[float] = []
        moves: list[float] = []
        for i in range(rounds):
            start = FIRST_SLOT + timedelta(days=730 if triggers else 1460, minutes=30 * i)
            claim = NewClaim(
                retell_call_id=f"{name}-{i}",
                key=f"{name}-{i}",
                event_type_id=8,
                starts_at=start,
                now=now,
            )
            started = time.perf_counter()
            call_id = first(CLAIM, claim.params())[0]
            booked = NewAppointment(
                call_id=call_id,
                event_type_id=8,
                calcom_v2_booking_id=ids + i,
                calcom_booking_uid=f"{name}-{i}",
                starts_at=start,
                ends_at=start + timedelta(minutes=30),
                idempotency_key=claim.key,
                now=now,
            )
            appointment_id = first(FILL_AND_LINK, booked.params())[0]
            first(READ_BACK_BY_ID, {"call_id": call_id, "appointment_id": appointment_id})
            bookings.append(time.perf_counter() - started)
        for i in range(rounds):
            start = FIRST_SLOT + timedelta(days=1095 if triggers else 1825, minutes=30 * i)
            started = time.perf_counter()
            old = first(LATEST_OF_CALL, {"retell_call_id": f"{name}-{i}"})
            moved = NewAppointment(
                call_id=old[1],
                event_type_id=8,
                calcom_v2_booking_id=ids + rounds + i,
                calcom_booking_uid=f"{name}-moved-{i}",
                starts_at=start,
                ends_at=start + timedelta(minutes=30),
                idempotency_key=f"{name}-moved-{i}",
                now=now,
            )
            first(INSERT_LINK_AND_RESCHEDULE, moved.params() | {"old_appointment_id": old[0]})
            moves.append(time.perf_counter() - started)
    finally:
        pooled.close()
    return bookings, moves


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
        floors = database_floor(engine, bookings)
        bare_floors = database_floor(engine, bookings, triggers=False)
        round_trips = round_trip_latency(engine, bookings)
        redis_round_trips = redis_round_trip_latency(bookings)
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
    print(f"for scale: one Redis round trip {stats(redis_round_trips)}")
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
    rescheduled = statistics.median(moves[1]) - statistics.median(moves[0])
    for label, samples, bare_samples, added, goal in (
        (
            "booking (claim, write, read-back)",
            floors[0],
            bare_floors[0],
            median_added,
            BOOKING_GOAL_COMMITS,
        ),
        (
            "reschedule (read, write)",
            floors[1],
            bare_floors[1],
            rescheduled,
            RESCHEDULE_GOAL_COMMITS,
        ),
    ):
        floor = statistics.median(samples)
        bare_floor = statistics.median(bare_samples)
        print(
            f"database floor, {label}: median {ms(floor)} = {floor / commit:.2f} durable"
            f" commits; the goal leaves {goal - floor / commit:.2f} around it, the service"
            f" spends {(added - floor) / commit:.2f}"
        )
        print(
            f"  without any trigger or foreign key check: {ms(bare_floor)} ="
            f" {bare_floor / commit:.2f} durable commits; the goal leaves"
            f" {goal - bare_floor / commit:.2f}"
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
