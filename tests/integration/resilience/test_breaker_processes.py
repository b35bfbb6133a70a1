"""Many OS processes, one circuit: the half-open probe is admitted exactly once across them.

Workers are forked (so twenty of them start in milliseconds, not twenty interpreter
imports); each builds its own store connections and event loop, so the only thing
they share is Redis or PostgreSQL, as separate replicas would.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from bookingguard.bootstrap import build_async_redis
from bookingguard.db import make_engine
from bookingguard.resilience import (
    BreakerPolicy,
    BreakerStore,
    CircuitBreaker,
    CircuitOpenError,
    RedisStore,
    SqlStore,
)
from tests.conftest import TestDatabase

from .conftest import CountingServer, age_redis_circuits, delete_keys

KEY = "appointment_booking:event_type:7"
FORK = multiprocessing.get_context("fork")
WORKERS = 20

StoreBuilder = Callable[[], BreakerStore]
#: Lets the given seconds pass for every store the matching builder builds, in every process.
Advance = Callable[[float], None]


def redis_builder(url: str, prefix: str) -> tuple[StoreBuilder, Advance]:
    """Redis stores; time passes by ageing the circuit (Redis keeps its own clock)."""
    return (
        lambda: RedisStore(build_async_redis(url, timeout_seconds=0.1), key_prefix=prefix),
        lambda seconds: age_redis_circuits(url, prefix, seconds),
    )


def sql_builder(url: str) -> tuple[StoreBuilder, Advance]:
    """SQL stores on the wall clock plus a skew that forked workers share with this process."""
    skew = FORK.Value("d", 0.0)

    def clock() -> float:
        return time.time() + skew.value

    def advance(seconds: float) -> None:
        skew.value += seconds

    return (
        lambda: SqlStore(make_engine(url, pool=False), owns_engine=True, clock=clock),
        advance,
    )


class Boom(Exception):
    """The dependency failing."""


async def _fail() -> None:
    raise Boom


async def open_circuit(build: StoreBuilder, policy: BreakerPolicy) -> None:
    """Trip the circuit from this process."""
    breaker = CircuitBreaker(build(), policy=policy, registry=CollectorRegistry())
    for _ in range(policy.failure_threshold):
        with pytest.raises(Boom):
            await breaker.call(KEY, _fail)
    stats = await breaker.statistics(KEY)
    await breaker.aclose()
    assert stats.state == "open"


def _worker(
    build: StoreBuilder,
    policy: BreakerPolicy,
    url: str,
    go: EventType,
    results: Queue[Any],
) -> None:
    async def main() -> tuple[str, float]:
        breaker = CircuitBreaker(build(), policy=policy, registry=CollectorRegistry())
        await breaker.statistics(KEY)  # connected before the start line
        async with httpx.AsyncClient() as client:
            results.put("ready")
            await asyncio.to_thread(go.wait, 60)
            started = time.time()
            try:
                await breaker.call(KEY, client.get, url)
            except CircuitOpenError:
                return "rejected", started
            except Exception as exc:
                return f"error: {exc!r}", started
            finally:
                # A store that did not answer in time leaves the process on its own memory
                # (the breaker degrades rather than fail): that call is not part of the race.
                degraded = breaker.active_store == "memory"
                await breaker.aclose()
        return ("degraded" if degraded else "called"), started

    results.put(asyncio.run(main()))


async def exactly_one_probe(build: StoreBuilder, advance: Advance) -> None:
    """Workers connect first; then the circuit opens, its cooldown passes and all of them call.

    Of the calls made while the probe is in flight exactly one reaches the server. A
    worker the machine held back until the probe had answered may legitimately be the
    next probe (or call a closed circuit), so calls are judged by when they started. A
    worker whose store did not answer within its timeout (a loaded machine, 20 processes
    on two cores) went on on its own memory store, as the breaker degrades by design: its
    call is counted at the server but is not part of the race through the shared store.
    """
    policy = BreakerPolicy(cooldown_seconds=30, timeout_seconds=5.0)
    delay = 2.0
    with CountingServer(delay=delay) as dependency:
        results: Queue[Any] = FORK.Queue()
        go = FORK.Event()
        workers = [
            FORK.Process(target=_worker, args=(build, policy, dependency.url, go, results))
            for _ in range(WORKERS)
        ]
        # Forked children share the parent's heap copy-on-write; freezing it keeps their
        # garbage collector from copying all of it (seconds in a long test session).
        gc.freeze()
        try:
            for worker in workers:
                worker.start()
        finally:
            gc.unfreeze()
        assert [results.get(timeout=60) for _ in workers] == ["ready"] * WORKERS
        await open_circuit(build, policy)
        advance(policy.cooldown_seconds)
        go.set()
        outcomes: list[tuple[str, float]] = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=10)
    probe_started = min(dependency.arrivals)
    racing = sorted(
        outcome
        for outcome, started in outcomes
        if started < probe_started + delay / 2 and outcome != "degraded"
    )
    assert len(racing) >= WORKERS // 2, f"too few workers called in time: {outcomes}"
    assert racing == ["called"] + ["rejected"] * (len(racing) - 1), outcomes
    assert not [outcome for outcome, _ in outcomes if outcome.startswith("error")]
    called = [outcome for outcome, _ in outcomes if outcome in ("called", "degraded")]
    assert dependency.count == len(called)


@pytest.mark.redis
async def test_twenty_processes_one_probe_through_redis(redis_url: str, redis_prefix: str) -> None:
    """20 processes call an open circuit as its cooldown ends: one request reaches the server."""
    try:
        await exactly_one_probe(*redis_builder(redis_url, redis_prefix))
    finally:
        delete_keys(redis_url, redis_prefix)


@pytest.mark.postgres
async def test_twenty_processes_one_probe_through_postgresql(
    postgres_database: TestDatabase,
) -> None:
    """The same race on the SQL store over PostgreSQL: the row lock admits one probe."""
    await exactly_one_probe(*sql_builder(postgres_database.url))


def _hold_probe(build: StoreBuilder, policy: BreakerPolicy, url: str) -> None:
    async def main() -> None:
        breaker = CircuitBreaker(build(), policy=policy, registry=CollectorRegistry())
        async with httpx.AsyncClient() as client:
            await breaker.call(KEY, client.get, url)

    asyncio.run(main())


async def probe_holder_dies(build: StoreBuilder, advance: Advance) -> None:
    policy = BreakerPolicy(cooldown_seconds=30, timeout_seconds=1.0)
    breaker = CircuitBreaker(build(), policy=policy, registry=CollectorRegistry())
    calls = 0

    async def recovered() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    with CountingServer(delay=30.0) as hanging:
        await open_circuit(build, policy)
        advance(policy.cooldown_seconds)
        holder = FORK.Process(target=_hold_probe, args=(build, policy, hanging.url))
        holder.start()
        assert await asyncio.to_thread(hanging.requested.wait, 20)
        assert hanging.count == 1
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(timeout=10)
        with pytest.raises(CircuitOpenError) as rejected:
            await breaker.call(KEY, recovered)
        assert 0 < rejected.value.retry_after <= policy.lease_seconds
        advance(policy.lease_seconds)
        assert await breaker.call(KEY, recovered) == "ok"
    await breaker.aclose()
    assert calls == 1


@pytest.mark.redis
async def test_killed_probe_holder_frees_the_lease_through_redis(
    redis_url: str, redis_prefix: str
) -> None:
    """A probe whose process is killed frees its lease at the TTL; another probe goes through."""
    try:
        await probe_holder_dies(*redis_builder(redis_url, redis_prefix))
    finally:
        delete_keys(redis_url, redis_prefix)


async def test_killed_probe_holder_frees_the_lease_through_sql(database: TestDatabase) -> None:
    """The same on the SQL store, on both dialects."""
    await probe_holder_dies(*sql_builder(database.url))
