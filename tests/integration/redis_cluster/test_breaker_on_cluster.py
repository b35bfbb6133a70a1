"""The circuit breaker on a Redis Cluster: each circuit on one node, circuits spread over them,
the whole life of a circuit shared by two processes' stores and audited in order."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry
from redis.crc import key_slot
from sqlalchemy import select

from bookingguard.bootstrap import build_async_redis
from bookingguard.db.models import CircuitBreakerTransition
from bookingguard.resilience import BreakerPolicy, CircuitBreaker, CircuitOpenError, RedisStore
from bookingguard.resilience.audit import TransitionAudit
from tests.conftest import TestDatabase
from tests.integration.resilience.conftest import age_redis_circuits, delete_keys
from tests.integration.resilience.test_breaker_processes import exactly_one_probe, redis_builder
from tests.support.redis_cluster import LocalRedisCluster

POLICY = BreakerPolicy(
    failure_threshold=3, cooldown_seconds=30, success_threshold=2, timeout_seconds=5.0
)


class Boom(Exception):
    """The dependency failing."""


async def _fail() -> None:
    raise Boom


async def _ok() -> str:
    return "ok"


def booking_circuits_on_two_nodes(cluster: LocalRedisCluster) -> tuple[str, str]:
    """Two booking circuits whose hash tags fall in slots of different nodes."""
    first = "appointment_booking:event_type:1"
    owner = cluster.owner_of(f"{{{first}}}")
    for event_type in range(2, 100):
        other = f"appointment_booking:event_type:{event_type}"
        if cluster.owner_of(f"{{{other}}}") != owner:
            return first, other
    raise AssertionError("every circuit landed on one node")


def store_on(cluster: LocalRedisCluster, prefix: str) -> RedisStore:
    """A store over a cluster client of its own, as one process of a replica holds."""
    return RedisStore(build_async_redis(cluster.url, timeout_seconds=2.0), key_prefix=prefix)


def keys_by_node(cluster: LocalRedisCluster, prefix: str) -> dict[int, set[str]]:
    """Each node's keys under ``prefix``, read from the node itself."""
    placed: dict[int, set[str]] = {}
    for port in cluster.ports:
        node = cluster.node(port)
        placed[port] = {str(key) for key in node.keys(f"{prefix}*")}
        node.close()
    return placed


@pytest.mark.redis
async def test_a_circuit_lives_on_one_node_and_circuits_spread_over_nodes(
    redis_cluster: LocalRedisCluster, redis_prefix: str
) -> None:
    """A circuit's state and probe lease share one slot and node; two circuits sit on two nodes."""
    first, second = booking_circuits_on_two_nodes(redis_cluster)
    store = store_on(redis_cluster, redis_prefix)
    breaker = CircuitBreaker(store, policy=POLICY, registry=CollectorRegistry())
    try:
        for key in (first, second):
            for _ in range(POLICY.failure_threshold):
                with pytest.raises(Boom):
                    await breaker.call(key, _fail)
        age_redis_circuits(redis_cluster.url, redis_prefix, POLICY.cooldown_seconds)
        probe = await store.acquire(first, POLICY)
        assert probe.permitted
        assert probe.probe_token is not None
        placed = keys_by_node(redis_cluster, redis_prefix)
        assert breaker.active_store == "redis"
    finally:
        await breaker.aclose()
        delete_keys(redis_cluster.url, redis_prefix)
    first_state, first_probe = (
        f"{redis_prefix}{{{first}}}:state",
        f"{redis_prefix}{{{first}}}:probe",
    )
    second_state = f"{redis_prefix}{{{second}}}:state"
    (first_node,) = [port for port, keys in placed.items() if first_state in keys]
    (second_node,) = [port for port, keys in placed.items() if second_state in keys]
    assert first_probe in placed[first_node]
    assert first_node != second_node
    assert key_slot(first_state.encode()) == key_slot(first_probe.encode())
    assert key_slot(first_state.encode()) != key_slot(second_state.encode())


@pytest.mark.redis
async def test_trip_probe_and_close_shared_by_two_processes_with_the_history_in_order(
    redis_cluster: LocalRedisCluster, redis_prefix: str, database: TestDatabase
) -> None:
    """One process trips, the other sees it open; one probe at a time; the history in order."""
    key = "appointment_booking:event_type:41"
    one, two = (
        CircuitBreaker(
            store_on(redis_cluster, redis_prefix),
            policy=POLICY,
            registry=CollectorRegistry(),
            audit=TransitionAudit(database.engine),
        )
        for _ in range(2)
    )
    probe_running, probe_may_end = asyncio.Event(), asyncio.Event()

    async def held_probe() -> str:
        probe_running.set()
        await probe_may_end.wait()
        return "probed"

    try:
        for _ in range(POLICY.failure_threshold):
            with pytest.raises(Boom):
                await one.call(key, _fail)
        with pytest.raises(CircuitOpenError):
            await two.call(key, _ok)
        age_redis_circuits(redis_cluster.url, redis_prefix, POLICY.cooldown_seconds)
        probe = asyncio.create_task(one.call(key, held_probe))
        await probe_running.wait()
        with pytest.raises(CircuitOpenError) as held:
            await two.call(key, _ok)
        assert 0 < held.value.retry_after <= POLICY.lease_seconds
        probe_may_end.set()
        assert await probe == "probed"
        assert (await two.statistics(key)).state == "half_open"
        assert await two.call(key, _ok) == "ok"
        after = (await one.statistics(key), await two.statistics(key))
        assert (one.active_store, two.active_store) == ("redis", "redis")
    finally:
        await one.aclose()
        await two.aclose()
        delete_keys(redis_cluster.url, redis_prefix)
    assert [stats.state for stats in after] == ["closed", "closed"]
    with database.engine.connect() as connection:
        history = connection.execute(
            select(
                CircuitBreakerTransition.from_state,
                CircuitBreakerTransition.to_state,
                CircuitBreakerTransition.reason,
                CircuitBreakerTransition.version,
                CircuitBreakerTransition.at,
            )
            .where(CircuitBreakerTransition.circuit_key == key)
            .order_by(CircuitBreakerTransition.version)
        ).all()
    moments = [row.at for row in history]
    assert moments == sorted(moments)
    assert [tuple(row)[:3] for row in history] == [
        ("closed", "open", "failure_threshold"),
        ("open", "half_open", "cooldown_elapsed"),
        ("half_open", "closed", "probes_succeeded"),
    ]
    # Versions grow with Redis' clock (ms): in the order of the transitions.
    assert [row.version for row in history] == sorted({row.version for row in history})


@pytest.mark.redis
async def test_twenty_processes_one_probe_through_a_redis_cluster(
    redis_cluster: LocalRedisCluster, redis_prefix: str
) -> None:
    """20 processes call an open circuit on the cluster as its cooldown ends: one probe passes."""
    try:
        await exactly_one_probe(*redis_builder(redis_cluster.url, redis_prefix))
    finally:
        delete_keys(redis_cluster.url, redis_prefix)


@pytest.mark.redis
async def test_a_fresh_cluster_client_serves_the_first_call_within_a_short_timeout(
    redis_cluster: LocalRedisCluster, redis_prefix: str
) -> None:
    """A new process's first guarded call runs on the cluster although learning it takes longer.

    The store's timeout is set below what learning the cluster took a client in this
    run, and far above one script's round trip.
    """
    measured = build_async_redis(redis_cluster.url, timeout_seconds=5.0)
    started = time.perf_counter()
    await measured.initialize()
    learning = time.perf_counter() - started
    await measured.aclose()
    store = RedisStore(
        build_async_redis(redis_cluster.url, timeout_seconds=learning / 2), key_prefix=redis_prefix
    )
    breaker = CircuitBreaker(store, policy=POLICY, registry=CollectorRegistry())
    try:
        assert await breaker.call("appointment_booking:event_type:5", _ok) == "ok"
        assert breaker.active_store == "redis"
    finally:
        await breaker.aclose()
        delete_keys(redis_cluster.url, redis_prefix)
