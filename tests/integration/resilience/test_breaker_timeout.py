"""The timeout is enforced: a slow operation is cancelled, counted, and reported as such."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry

from bookingguard.resilience import (
    BreakerPolicy,
    CircuitBreaker,
    MemoryStore,
    OperationTimeoutError,
)

from .conftest import CountingServer

KEY = "appointment_booking:event_type:9"
POLICY = BreakerPolicy(timeout_seconds=0.2, slow_call_seconds=0.1, minimum_calls=10)


def breaker() -> CircuitBreaker:
    return CircuitBreaker(MemoryStore(), policy=POLICY, registry=CollectorRegistry())


async def test_http_dependency_sleeping_five_seconds_times_out_fast() -> None:
    """A server that answers after 5 s: OperationTimeoutError well within a second, counted."""
    guard = breaker()
    with CountingServer(delay=5.0) as dependency:
        async with httpx.AsyncClient() as client:
            started = time.monotonic()
            with pytest.raises(OperationTimeoutError) as raised:
                await guard.call(KEY, client.get, dependency.url)
            elapsed = time.monotonic() - started
    assert isinstance(raised.value, TimeoutError)
    assert raised.value.circuit_key == KEY
    assert 0.2 <= elapsed < 0.7
    assert dependency.count == 1
    stats = await guard.statistics(KEY)
    assert (stats.failure_count, stats.slow_call_rate) == (1, 100.0)


async def test_timed_out_coroutine_is_cancelled() -> None:
    """The operation itself is cancelled at the timeout, not left running."""
    cancelled = asyncio.Event()

    async def sleeper() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(OperationTimeoutError):
        await breaker().call(KEY, sleeper)
    assert cancelled.is_set()


async def test_sync_callable_stops_the_wait_at_the_timeout() -> None:
    """A blocking callable runs in a thread; the caller stops waiting at the timeout."""
    guard = breaker()
    started = time.monotonic()
    with pytest.raises(OperationTimeoutError):
        await guard.call(KEY, time.sleep, 1.0)
    assert time.monotonic() - started < 0.7
    assert (await guard.statistics(KEY)).failure_count == 1


async def test_outer_cancellation_is_not_a_timeout_and_not_a_failure() -> None:
    """A caller's own timeout propagates as plain cancellation; the dependency is not blamed."""
    guard = CircuitBreaker(MemoryStore(), policy=BreakerPolicy(), registry=CollectorRegistry())
    with pytest.raises(TimeoutError) as raised:
        async with asyncio.timeout(0.1):
            await guard.call(KEY, asyncio.sleep, 5)
    assert not isinstance(raised.value, OperationTimeoutError)
    await guard.drain()
    assert (await guard.statistics(KEY)).failure_count == 0


async def test_dependencys_own_timeout_error_passes_through_as_a_failure() -> None:
    """A TimeoutError raised by the dependency itself is re-raised unchanged and counted."""
    guard = breaker()

    async def gives_up() -> None:
        raise TimeoutError("upstream gave up")

    with pytest.raises(TimeoutError, match="upstream gave up") as raised:
        await guard.call(KEY, gives_up)
    assert not isinstance(raised.value, OperationTimeoutError)
    assert (await guard.statistics(KEY)).failure_count == 1


async def test_lambda_returning_a_coroutine_is_awaited() -> None:
    """A sync callable that returns a coroutine has it awaited, under the same timeout."""
    guard = breaker()
    with pytest.raises(OperationTimeoutError):
        await guard.call(KEY, lambda: asyncio.sleep(5))
    assert await guard.call(KEY, lambda: asyncio.sleep(0, result=3)) == 3


async def test_quick_operation_returns_its_value() -> None:
    """A quick operation well under the timeout returns its value and counts nothing."""
    guard = breaker()

    async def quick() -> int:
        await asyncio.sleep(0.01)
        return 7

    assert await guard.call(KEY, quick) == 7
    assert (await guard.statistics(KEY)).failure_count == 0
