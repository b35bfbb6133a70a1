"""Rate limits per token (or per client IP when unauthenticated), with the ``limits`` library.

A moving window of ``api.rate_limit`` (default 60/minute). The counters live in
Redis when ``redis_url`` is set, so every replica shares them; in process memory
otherwise. If Redis cannot be reached the request is let through and the fault
logged: an outage of the limiter's store must not take the API down with it.
On a Redis Cluster each counter is one key (``limits``' moving window keeps one
list per limit and identity, and its scripts touch that key alone), so counters
spread over the nodes and one node's loss lets only its counters' requests through.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis, RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisClusterException, RedisError

from bookingguard.redis_scripts import node_local
from bookingguard.settings import Settings

__all__ = ["RateDecision", "RateLimiter", "SharedClusterStorage"]

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RateDecision:
    """Whether a request may proceed; when not, how many seconds until it may."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int


class SharedClusterStorage(RedisClusterStorage):
    """``limits``' Redis Cluster storage over a cluster client built elsewhere.

    ``RedisClusterStorage`` builds a client of its own from the URL; this one takes the
    process's (``bootstrap``'s), as ``RedisStorage(connection_pool=…)`` does on one
    server, so the limiter holds no connections of its own; and its scripts need only
    their key's node (``NodeLocalScript``). The counting is limits'.
    """

    def __init__(self, uri: str, client: RedisCluster, *, wrap_exceptions: bool = True) -> None:
        Storage.__init__(self, uri, wrap_exceptions=wrap_exceptions)
        self.key_prefix = RedisStorage.PREFIX
        self.target_server = "redis"
        self.dependency = self.dependencies["redis"].module
        self.storage = client
        self.initialize_storage(uri)

    def initialize_storage(self, uri: str) -> None:
        """limits' scripts, each run on its key's node alone (``NodeLocalScript``)."""
        super().initialize_storage(uri)
        for name, value in list(vars(self).items()):
            if isinstance(value, Script):
                setattr(self, name, node_local(value))


class RateLimiter:
    """One limit for every key (``token:NAME`` or ``ip:ADDRESS``) over a shared storage."""

    def __init__(
        self,
        rate: str,
        storage: Storage,
        *,
        namespace: str = "bookingguard:ratelimit",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.item: RateLimitItem = parse(rate)
        self.storage = storage
        self.namespace = namespace
        self._limiter = MovingWindowRateLimiter(storage)
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        redis_client: Redis | RedisCluster | None,
        namespace: str = "bookingguard:ratelimit",
    ) -> RateLimiter:
        """Over ``redis_client`` (the process's blocking client) if given, else in memory.

        On one server ``limits`` wraps the client's pool in a client of its own; on a
        cluster it uses the cluster client itself: either way the connections are shared.
        """
        storage: Storage = MemoryStorage()
        if isinstance(redis_client, RedisCluster) and settings.redis_url:
            storage = SharedClusterStorage(settings.redis_url, redis_client)
        elif isinstance(redis_client, Redis) and settings.redis_url:
            url = settings.redis_url
            if url.startswith("unix://"):
                url = "redis+" + url
            storage = RedisStorage(
                url, connection_pool=redis_client.connection_pool, wrap_exceptions=True
            )
        return cls(settings.api.rate_limit, storage, namespace=namespace)

    def hit(self, key: str) -> RateDecision:
        """Count one request for ``key`` and say whether it is within the limit."""
        amount = self.item.amount
        try:
            allowed = self._limiter.hit(self.item, self.namespace, key)
            stats = self._limiter.get_window_stats(self.item, self.namespace, key)
        except (StorageError, RedisError, RedisClusterException, ConnectionError) as exc:
            logger.warning("rate limiter storage unavailable; request allowed", error=str(exc))
            return RateDecision(True, amount, amount, 0)
        retry_after = max(1, math.ceil(stats.reset_time - self._clock()))
        return RateDecision(allowed, amount, stats.remaining, 0 if allowed else retry_after)
