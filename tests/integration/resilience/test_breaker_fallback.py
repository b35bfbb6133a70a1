"""Redis goes away mid-run: the breaker keeps protecting on SQL, then returns to Redis."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from bookingguard.bootstrap import build_async_redis
from bookingguard.resilience import (
    BreakerEvent,
    BreakerPolicy,
    CircuitBreaker,
    CircuitOpenError,
    EventKind,
    FallbackStore,
    MemoryStore,
    RedisStore,
    SqlStore,
)
from tests.conftest import TestDatabase
from tests.support.redis_server import RedisServer

from .conftest import FakeClock

KEY = "appointment_booking:event_type:5"
POLICY = BreakerPolicy(cooldown_seconds=30, timeout_seconds=2)


class Unavailable(Exception):
    status_code = 503


async def fail() -> None:
    raise Unavailable


async def ok() -> str:
    return "ok"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own; killed at the end if still running."""
    server = RedisServer()
    server.start()
    yield server
    if server.process is not None:
        server.kill()


async def test_killed_redis_degrades_to_sql_and_recovers(
    redis_server: RedisServer, database: TestDatabase
) -> None:
    """Kill Redis mid-run: no store error reaches callers, it opens on SQL, Redis takes it back."""
    events: list[BreakerEvent] = []
    monotonic = FakeClock(start=0.0)
    chain = FallbackStore(
        [
            RedisStore(build_async_redis(redis_server.url, timeout_seconds=0.1)),
            SqlStore(database.engine),
            MemoryStore(),
        ],
        recheck_seconds=5,
        monotonic=monotonic,
    )
    breaker = CircuitBreaker(chain, policy=POLICY, registry=CollectorRegistry())
    breaker.add_listener(events.append)
    assert await breaker.call(KEY, ok) == "ok"
    assert breaker.active_store == "redis"

    redis_server.kill()
    started = time.monotonic()
    assert await breaker.call(KEY, ok) == "ok"
    assert time.monotonic() - started < 0.5
    assert breaker.active_store == "sql"
    for _ in range(3):
        with pytest.raises(Unavailable):
            await breaker.call(KEY, fail)
    with pytest.raises(CircuitOpenError):
        await breaker.call(KEY, ok)
    stats = await breaker.statistics(KEY)
    assert (stats.state, stats.failure_count, stats.store) == ("open", 3, "sql")

    redis_server.start()
    monotonic.advance(5)
    # The restarted server is empty: it adopts the circuit opened on SQL (through NOSCRIPT
    # and a script reload) before the chain returns to it.
    with pytest.raises(CircuitOpenError):
        await breaker.call(KEY, ok)
    stats = await breaker.statistics(KEY)
    assert (stats.state, stats.failure_count, stats.store) == ("open", 3, "redis")
    assert breaker.active_store == "redis"
    storage_kinds = (EventKind.STORAGE_DEGRADED, EventKind.STORAGE_RECOVERED)
    switches = [(e.kind, e.from_store, e.to_store) for e in events if e.kind in storage_kinds]
    assert switches == [
        (EventKind.STORAGE_DEGRADED, "redis", "sql"),
        (EventKind.STORAGE_RECOVERED, "sql", "redis"),
    ]
    await breaker.aclose()


async def test_unanswering_redis_is_given_up_on_within_the_store_timeout() -> None:
    """A Redis that accepts connections but never answers costs one call ≈ 100 ms, not a hang."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    events: list[BreakerEvent] = []
    chain = FallbackStore(
        [
            RedisStore(build_async_redis(f"redis://127.0.0.1:{port}/0", timeout_seconds=0.1)),
            MemoryStore(),
        ],
        recheck_seconds=30,
    )
    breaker = CircuitBreaker(chain, policy=POLICY, registry=CollectorRegistry())
    breaker.add_listener(events.append)
    try:
        started = time.monotonic()
        assert await breaker.call(KEY, ok) == "ok"
        first = time.monotonic() - started
        started = time.monotonic()
        assert await breaker.call(KEY, ok) == "ok"
        second = time.monotonic() - started
    finally:
        silent.close()
    assert 0.05 <= first < 0.5
    assert second < 0.05
    assert breaker.active_store == "memory"
    assert [(e.kind, e.to_store) for e in events] == [(EventKind.STORAGE_DEGRADED, "memory")]
    await breaker.aclose()
