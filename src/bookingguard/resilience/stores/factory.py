"""``store_from_settings``: the chain Redis → SQL → memory that the configuration asks for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis.asyncio import Redis, RedisCluster
from sqlalchemy import Engine

from bookingguard.resilience.stores.base import BreakerStore
from bookingguard.resilience.stores.fallback import FallbackStore
from bookingguard.resilience.stores.memory import MemoryStore
from bookingguard.resilience.stores.redis import RedisStore
from bookingguard.resilience.stores.sql import SqlStore

if TYPE_CHECKING:
    from bookingguard.settings import Settings

__all__ = ["store_from_settings"]


def store_from_settings(
    settings: Settings,
    *,
    engine: Engine,
    redis_client: Redis | RedisCluster | None = None,
    clock: Callable[[], float] = time.time,
) -> FallbackStore:
    """Redis (when a ``redis_client`` is given) → SQL over ``engine`` → memory.

    With no Redis (the embedded default) the SQL store leads, which is what makes a
    ``bookingguard breaker open`` in one process visible to every other. The chain
    builds no connection of its own: ``bootstrap`` builds the engine and, when
    ``redis_url`` is set, the process's one asyncio Redis client, and passes them in.
    """
    section = settings.circuit_breaker
    stores: list[BreakerStore] = []
    if redis_client is not None:
        stores.append(
            RedisStore(
                redis_client,
                key_prefix=section.redis_key_prefix,
                timeout_seconds=section.redis_timeout_seconds,
            )
        )
    stores.append(SqlStore(engine, clock=clock))
    stores.append(MemoryStore(clock=clock))
    return FallbackStore(stores, recheck_seconds=section.store_recheck_seconds)
