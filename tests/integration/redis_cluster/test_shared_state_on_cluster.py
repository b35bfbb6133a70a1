"""Rate limits and job leases on a Redis Cluster, shared by replicas; a served app's components
all hold bootstrap's cluster clients."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from bookingguard.api.context import OperatorContext
from bookingguard.api.ratelimit import RateLimiter, SharedClusterStorage
from bookingguard.api.server import build_server_app
from bookingguard.api.v1.backends import ApiBackends
from bookingguard.bootstrap import Services, build_blocking_redis
from bookingguard.monitoring.locks import FallbackJobLock, RedisJobLock
from bookingguard.resilience import RedisStore
from bookingguard.resilience.stores.fallback import FallbackStore
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.integration.resilience.conftest import delete_keys
from tests.support.redis_cluster import LocalRedisCluster


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def names_on_two_nodes(cluster: LocalRedisCluster, prefix: str) -> tuple[str, str]:
    """Two job names whose lease keys under ``prefix`` live on different nodes."""
    first = "monitor-check"
    owner = cluster.owner_of(prefix + first)
    for number in range(100):
        other = f"job-{number}"
        if cluster.owner_of(prefix + other) != owner:
            return first, other
    raise AssertionError("every lease landed on one node")


@pytest.mark.redis
def test_rate_limit_is_shared_by_two_replicas_on_a_cluster(
    redis_cluster: LocalRedisCluster, redis_prefix: str
) -> None:
    """Two replicas' limiters count one client's requests together; the fourth of 3/minute waits."""
    settings = Settings(redis_url=redis_cluster.url, api={"rate_limit": "3/minute"})
    clients = [build_blocking_redis(redis_cluster.url) for _ in range(2)]
    one, two = (
        RateLimiter.from_settings(settings, redis_client=client, namespace=redis_prefix + "rl")
        for client in clients
    )
    try:
        decisions = [limiter.hit("token:grafana") for limiter in (one, two, one, two)]
        other = two.hit("token:ci")
    finally:
        for client in clients:
            client.close()
        delete_keys(redis_cluster.url, "LIMITS:LIMITER/" + redis_prefix)
    assert [decision.allowed for decision in decisions] == [True, True, True, False]
    assert [decision.remaining for decision in decisions[:3]] == [2, 1, 0]
    assert 0 < decisions[3].retry_after <= 60
    assert other.allowed
    assert other.remaining == 2


@pytest.mark.redis
def test_job_leases_are_shared_by_two_replicas_on_a_cluster(
    redis_cluster: LocalRedisCluster, redis_prefix: str
) -> None:
    """A lease one replica holds refuses the other until released, on either of two nodes."""
    clock = FakeClock()
    clients = [build_blocking_redis(redis_cluster.url) for _ in range(2)]
    one, two = (RedisJobLock(client, prefix=redis_prefix, monotonic=clock) for client in clients)
    outcomes = []
    try:
        for name in names_on_two_nodes(redis_cluster, redis_prefix):
            lease = one.acquire(name, hold=timedelta(minutes=1))
            refused = two.acquire(name, hold=timedelta(0))
            clock.now += 60
            assert lease is not None
            one.release(lease)
            taken_over = two.acquire(name, hold=timedelta(0))
            outcomes.append((refused, taken_over is not None))
    finally:
        for client in clients:
            client.close()
        delete_keys(redis_cluster.url, redis_prefix)
    assert outcomes == [(None, True), (None, True)]


@pytest.mark.redis
async def test_every_component_holds_the_process_cluster_clients(
    database: TestDatabase, redis_cluster: LocalRedisCluster
) -> None:
    """With a redis+cluster URL the breaker, readiness, limiter and leases use bootstrap's two."""
    settings = Settings(database_url=database.url, redis_url=redis_cluster.url)
    app = build_server_app(settings, engine=database.engine)
    backends: ApiBackends = app.state.backends
    services: Services = app.state.services
    operator: OperatorContext = app.state.operator
    assert services.redis is not None
    shared_async, shared_blocking = services.redis.asyncio, services.redis.blocking
    assert isinstance(shared_async, AsyncRedisCluster)
    assert isinstance(shared_blocking, RedisCluster)

    chain = backends.breaker.store
    assert isinstance(chain, FallbackStore)
    redis_store = chain.stores[0]
    assert isinstance(redis_store, RedisStore)
    assert redis_store._client is shared_async

    storage = operator.rate_limiter.storage
    assert isinstance(storage, SharedClusterStorage)
    assert storage.storage is shared_blocking

    lock = backends.monitoring.lock
    assert isinstance(lock, FallbackJobLock)
    assert isinstance(lock.primary, RedisJobLock)
    assert lock.primary._redis is shared_blocking
    await services.aclose()
