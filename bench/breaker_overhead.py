"""Per-call overhead of a guarded no-op in closed state: bookingguard vs pybreaker.

Run: ``.venv/bin/python bench/breaker_overhead.py [--redis-url URL]``. Prints µs per
call added by each breaker (the no-op's own cost subtracted), Redis round trips
per call (counted at the connection), and the ratios the issue sets as goals:
the Redis store at least 1.8x faster than pybreaker's ``CircuitRedisStorage`` with one
round trip per successful call, the memory store within 2x of pybreaker in memory.
Each figure is the best of a few rounds; the whole run stays well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pybreaker
import redis
from prometheus_client import CollectorRegistry

from bookingguard.bootstrap import build_async_redis
from bookingguard.resilience import CircuitBreaker, MemoryStore, RedisStore
from bookingguard.resilience.policy import BreakerPolicy

ROUNDS = 5
MEMORY_CALLS = 50_000
REDIS_CALLS = 2_000


class CountingConnection(redis.Connection):
    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


def noop() -> None:
    return None


async def async_noop() -> None:
    return None


def time_sync(fn: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


async def time_async(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - started) / calls * 1e6


async def measure(redis_url: str, run: str) -> dict[str, float]:
    """Best-of-ROUNDS µs per call; contenders alternate within each round (fair on a busy box)."""
    key = "appointment_booking:event_type:42"
    theirs_memory = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=30)
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=run)
    theirs_redis = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=30, state_storage=storage)
    ours_memory = CircuitBreaker(
        MemoryStore(), policy=BreakerPolicy(), registry=CollectorRegistry()
    )
    async_client = build_async_redis(redis_url, timeout_seconds=0.1)
    store = RedisStore(async_client, key_prefix=f"bench:{run}:cb:")
    ours_redis = CircuitBreaker(store, policy=BreakerPolicy(), registry=CollectorRegistry())
    theirs_redis.call(noop)
    await ours_redis.call(key, async_noop)

    best: dict[str, float] = {}

    def keep(name: str, value: float) -> None:
        best[name] = min(best.get(name, float("inf")), value)

    their_trips = our_trips = 0
    for _ in range(ROUNDS):
        keep("bare_sync", time_sync(noop, MEMORY_CALLS))
        keep("theirs_memory", time_sync(lambda: theirs_memory.call(noop), MEMORY_CALLS))
        keep("bare_async", await time_async(async_noop, MEMORY_CALLS))
        keep(
            "ours_memory",
            await time_async(lambda: ours_memory.call(key, async_noop), MEMORY_CALLS),
        )
        sent = CountingConnection.sent
        keep("theirs_redis", time_sync(lambda: theirs_redis.call(noop), REDIS_CALLS))
        their_trips += CountingConnection.sent - sent
        sent = store.round_trips or 0
        keep(
            "ours_redis",
            await time_async(lambda: ours_redis.call(key, async_noop), REDIS_CALLS),
        )
        our_trips += (store.round_trips or 0) - sent
    if ours_redis.active_store != "redis":
        raise SystemExit("the Redis store fell back: is Redis running?")
    stale = list(client.scan_iter(match=f"*{run}*"))
    if stale:
        client.delete(*stale)
    client.close()
    await ours_redis.aclose()
    await async_client.aclose()
    return {
        "ours_memory": best["ours_memory"] - best["bare_async"],
        "theirs_memory": best["theirs_memory"] - best["bare_sync"],
        "ours_redis": best["ours_redis"] - best["bare_async"],
        "theirs_redis": best["theirs_redis"] - best["bare_sync"],
        "ours_trips": our_trips / (REDIS_CALLS * ROUNDS),
        "theirs_trips": their_trips / (REDIS_CALLS * ROUNDS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BOOKINGGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/11"),
    )
    args = parser.parse_args()
    figures = asyncio.run(measure(args.redis_url, uuid.uuid4().hex[:8]))
    print(f"{'per-call overhead (µs)':<28}{'bookingguard':>14}{'pybreaker':>12}{'speedup':>10}")
    for name in ("memory", "redis"):
        ours, theirs = figures[f"ours_{name}"], figures[f"theirs_{name}"]
        print(f"{name:<28}{ours:>14.2f}{theirs:>12.2f}{theirs / ours:>9.2f}x")
    print(
        f"{'redis round trips per call':<28}{figures['ours_trips']:>14.2f}"
        f"{figures['theirs_trips']:>12.2f}"
    )
    memory_factor = figures["ours_memory"] / figures["theirs_memory"]
    redis_speedup = figures["theirs_redis"] / figures["ours_redis"]
    print(
        f"goals: memory within 2x of pybreaker: {memory_factor:.2f}x "
        f"({'met' if memory_factor <= 2 else 'missed'}); "
        f"redis at least 1.8x faster: {redis_speedup:.2f}x "
        f"({'met' if redis_speedup >= 1.8 else 'missed'}); "
        f"one round trip: {'met' if figures['ours_trips'] <= 1.0 else 'missed'}"
    )


if __name__ == "__main__":
    main()
