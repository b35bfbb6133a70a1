"""Two workers racing one idempotency key create one Cal.com booking, on both databases.

Each worker is a ``BookingService`` with an engine of its own (as ``serve --workers`` and
replicas have): two in one event loop, and two in separate OS processes. They are
released together by a barrier, against the Cal.com stand-in, whose creates wait at a
gate until both workers have been through their first database step (the claim): the
requests then overlap at Cal.com whenever both would create. The stand-in's ledger
must show one create, and both answers the same booking.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from bookingguard.booking import (
    BookingOutcome,
    BookingRequest,
    BookingService,
    PostBookingValidator,
    SqlBookingStore,
)
from bookingguard.calcom import CalcomClient
from bookingguard.db import make_engine, session_factory
from bookingguard.db.spool import Spool
from tests.conftest import TestDatabase
from tests.support.booking_fakes import FakeBreaker, ImmediateRetrier, watched
from tests.support.calcom_standin import CalcomStandin

SLOT = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
#: Bounds on waiting for a worker, so that a broken one fails the test rather than hangs it.
WORKER_SECONDS = 60.0


def _request() -> BookingRequest:
    return BookingRequest(
        retell_call_id="call_race",
        start=SLOT,
        event_type_id=42,
        name="Ada Lovelace",
        email="ada@example.com",
        time_zone="Europe/Berlin",
    )


def _service(
    url: str, base_url: str, api_key: str, on_call: Callable[[str], None]
) -> tuple[BookingService, CalcomClient]:
    """A worker's booking service: its own engine and Cal.com client."""
    engine = make_engine(url)
    client = CalcomClient(base_url=base_url, api_key=api_key, read_timeout=WORKER_SECONDS)
    store = watched(SqlBookingStore(session_factory(engine)), on_call)
    service = BookingService(
        store=store,
        calcom=client,
        breaker=FakeBreaker(),
        retrier=ImmediateRetrier(),
        validator=PostBookingValidator(
            max_appointment_age_seconds=300, clock=lambda: datetime.now(UTC)
        ),
        clock=lambda: datetime.now(UTC),
        # Nothing fails here; a spool of its own keeps a failure out of others' files.
        spool=Spool(Path(tempfile.mkdtemp(prefix="bg-claim-race-")) / "spool.db"),
    )
    return service, client


def _first_call(signal: Callable[[], None]) -> Callable[[str], None]:
    """Calls ``signal`` after the worker's first store operation (its claim) returns."""
    done = False

    def on_call(name: str) -> None:
        nonlocal done
        if not done:
            done = True
            signal()

    return on_call


def _assert_one_booking(calcom: CalcomStandin, outcomes: list[tuple[str, str | None]]) -> None:
    assert calcom.request_count("create") == 1
    (booking,) = calcom.bookings()
    assert sorted(result for result, _ in outcomes) == ["already_booked", "booked"]
    assert {uid for _, uid in outcomes} == {booking["uid"]}


async def test_two_services_on_their_own_engines_create_once(
    database: TestDatabase, calcom_standin: CalcomStandin
) -> None:
    """Two services, two engines, one event loop, one key: one create, one booking named
    by both answers."""
    gate = calcom_standin.gate("create")
    arrived = [asyncio.Event(), asyncio.Event()]
    workers = [
        _service(
            database.url,
            calcom_standin.base_url,
            calcom_standin.api_key,
            _first_call(event.set),
        )
        for event in arrived
    ]
    barrier = asyncio.Barrier(2)

    async def book(service: BookingService) -> BookingOutcome:
        await barrier.wait()
        return await service.book(_request())

    try:
        tasks = [asyncio.create_task(book(service)) for service, _ in workers]
        for event in arrived:
            await asyncio.wait_for(event.wait(), WORKER_SECONDS)
        assert await asyncio.to_thread(gate.wait_held, 1, WORKER_SECONDS)
        gate.release()
        outcomes = await asyncio.gather(*tasks)
    finally:
        for service, client in workers:
            await service.aclose()
            await client.aclose()
    _assert_one_booking(calcom_standin, [(o.result.value, o.calcom_booking_uid) for o in outcomes])
    assert outcomes[0].appointment_id == outcomes[1].appointment_id


def _book_in_process(url: str, base_url: str, api_key: str, barrier: Barrier, results: Any) -> None:
    """A worker process: wait at the barrier with the other, book, report what it got."""

    async def main() -> None:
        service, client = _service(
            url, base_url, api_key, _first_call(lambda: results.put(("arrived", None, None)))
        )
        try:
            await asyncio.to_thread(barrier.wait, WORKER_SECONDS)
            outcome = await service.book(_request())
        finally:
            await service.aclose()
            await client.aclose()
        results.put(("outcome", outcome.result.value, outcome.calcom_booking_uid))

    asyncio.run(main())


def test_two_processes_create_once(database: TestDatabase, calcom_standin: CalcomStandin) -> None:
    """Two OS processes (as ``serve --workers 2``), one key: one create, one booking named
    by both answers."""
    gate = calcom_standin.gate("create")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(
            target=_book_in_process,
            args=(database.url, calcom_standin.base_url, calcom_standin.api_key, barrier, results),
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        arrivals = [results.get(timeout=WORKER_SECONDS)[0] for _ in workers]
        assert arrivals == ["arrived", "arrived"]
        assert gate.wait_held(1, WORKER_SECONDS)
        gate.release()
        outcomes = []
        for _ in workers:
            kind, result, uid = results.get(timeout=WORKER_SECONDS)
            assert kind == "outcome"
            outcomes.append((result, uid))
    except queue.Empty:
        pytest.fail("a worker process gave no answer in time")
    finally:
        gate.release()
        for worker in workers:
            worker.join(WORKER_SECONDS)
    assert [worker.exitcode for worker in workers] == [0, 0]
    _assert_one_booking(calcom_standin, outcomes)
