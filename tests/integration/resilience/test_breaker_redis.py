"""Redis layout: one hash per circuit, keys in one cluster slot, only the probe lease expires."""

from __future__ import annotations

import asyncio

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.crc import key_slot

from bookingguard.bootstrap import build_async_redis
from bookingguard.resilience import BreakerPolicy, CircuitBreaker, CircuitOpenError, RedisStore

from .conftest import age_redis_circuits, delete_keys

KEY = "appointment_booking:event_type:77"


async def test_only_the_probe_lease_has_a_ttl(redis_url: str, redis_prefix: str) -> None:
    """The circuit's hash never expires; the lease does, within its TTL; both share a slot."""
    policy = BreakerPolicy(cooldown_seconds=30, timeout_seconds=1.0)
    breaker = CircuitBreaker(
        RedisStore(build_async_redis(redis_url, timeout_seconds=0.1), key_prefix=redis_prefix),
        policy=policy,
        registry=CollectorRegistry(),
    )
    client = redis.Redis.from_url(redis_url)
    state_key, probe_key = f"{redis_prefix}{{{KEY}}}:state", f"{redis_prefix}{{{KEY}}}:probe"
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_probe() -> None:
        entered.set()
        await release.wait()

    try:
        await breaker.force_open(KEY)
        assert client.ttl(state_key) == -1
        await breaker.reset(KEY)
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await breaker.call(KEY, _fail)
        age_redis_circuits(redis_url, redis_prefix, policy.cooldown_seconds)
        probe = asyncio.create_task(breaker.call(KEY, slow_probe))
        await entered.wait()
        assert 0 < client.pttl(probe_key) <= policy.lease_seconds * 1000
        assert client.ttl(state_key) == -1
        assert key_slot(state_key.encode()) == key_slot(probe_key.encode())
        with pytest.raises(CircuitOpenError) as rejected:
            await breaker.call(KEY, slow_probe)
        assert rejected.value.state == "half_open"
        release.set()
        await probe
        assert client.exists(probe_key) == 0
    finally:
        client.close()
        await breaker.aclose()
        delete_keys(redis_url, redis_prefix)


async def _fail() -> None:
    raise ConnectionError("dependency refused")
