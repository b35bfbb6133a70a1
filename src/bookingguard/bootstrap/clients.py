"""The process's engine and Redis clients (see the package's docstring for why two)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import redis
import redis.asyncio as aioredis
from sqlalchemy import Engine

from bookingguard.db.engine import make_engine
from bookingguard.settings import Settings
from bookingguard.urls import ClusterUrl, parse_cluster_url


def build_engine(settings: Settings) -> Engine:
    """The database engine for the configured URL."""
    return make_engine(settings.database_url)


#: Socket timeouts of the blocking pool: a rate-limit check or a lease waits no longer.
BLOCKING_REDIS_TIMEOUT_SECONDS = 1.0

#: The process's asyncio client: one server's, or a Redis Cluster's.
AsyncRedisClient: TypeAlias = aioredis.Redis | aioredis.RedisCluster
#: The process's blocking client: one server's, or a Redis Cluster's.
BlockingRedisClient: TypeAlias = redis.Redis | redis.RedisCluster


def build_async_redis(url: str, *, timeout_seconds: float) -> AsyncRedisClient:
    """An asyncio client (one pool per server) whose connect and read timeouts bound every command.

    It retries once at once, so a pooled connection that died with a restarted
    server is replaced instead of failing the call. For a ``redis+cluster://`` URL
    it is a cluster client; it learns the slots at its first command.
    """
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    cluster = parse_cluster_url(url)
    if cluster is not None:
        return aioredis.RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
            username=cluster.username,
            password=cluster.password,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 1),
        )
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=0,
    )


def build_blocking_redis(
    url: str, *, timeout_seconds: float = BLOCKING_REDIS_TIMEOUT_SECONDS
) -> BlockingRedisClient:
    """A blocking client (thread-safe pools) for code that runs outside the event loop.

    For a ``redis+cluster://`` URL it is a cluster client, which asks a listed node
    for the slots as it is built (redis-py raises ``RedisClusterException`` when none
    answers), and then retries a failed command once, at once, as the asyncio one does.
    """
    cluster = parse_cluster_url(url)
    if cluster is not None:
        return _blocking_cluster(cluster, timeout_seconds)
    return redis.Redis.from_url(
        url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
    )


def _blocking_cluster(cluster: ClusterUrl, timeout_seconds: float) -> redis.RedisCluster:
    from redis.backoff import NoBackoff
    from redis.cluster import ClusterNode
    from redis.retry import Retry

    # redis.cluster.ClusterNode has no annotations (its asyncio twin has).
    nodes = [ClusterNode(host, port) for host, port in cluster.nodes]  # type: ignore[no-untyped-call]
    return redis.RedisCluster(
        startup_nodes=nodes,
        username=cluster.username,
        password=cluster.password,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 1),
    )


class RedisClients:
    """The process's Redis connections: one asyncio client and one blocking client.

    The blocking one is built when first asked for: a Redis Cluster's learns the
    cluster as it is built and fails when no node answers, so a command that needs
    only the asyncio one (``bookingguard breaker …``) still runs, on the SQL store.
    """

    def __init__(
        self, asyncio: AsyncRedisClient, blocking: Callable[[], BlockingRedisClient]
    ) -> None:
        #: The breaker store and ``/readyz`` (short timeouts: the breaker's own).
        self.asyncio = asyncio
        self._build_blocking = blocking
        self._blocking: BlockingRedisClient | None = None

    @property
    def blocking(self) -> BlockingRedisClient:
        """The rate limiter and the job leases (the same client at every use)."""
        if self._blocking is None:
            self._blocking = self._build_blocking()
        return self._blocking

    async def aclose(self) -> None:
        await self.asyncio.aclose()
        if self._blocking is not None:
            self._blocking.close()


def build_redis(settings: Settings) -> RedisClients | None:
    """The process's Redis clients when ``redis_url`` is set, else None (in-process state)."""
    if not settings.redis_url:
        return None
    url = settings.redis_url
    return RedisClients(
        asyncio=build_async_redis(
            url, timeout_seconds=settings.circuit_breaker.redis_timeout_seconds
        ),
        blocking=lambda: build_blocking_redis(url),
    )
