"""``store_from_settings``: the chain Redis → SQL → memory that the configuration asks for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis.asyncio import Redis, RedisCluster
from sqlalchemy import Engine

from bookingguard.db.engine import make_engine
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
    engine: Engine | None = None,
    redis_client: Redis | RedisCluster | None = None,
    clock: Callable[[], float] = time.time,
) -> FallbackStore:
    """Redis (if ``redis_url`` is set) → SQL over ``database_url`` → memory.

    With no Redis (the embedded default) the SQL store leads, which is what makes a
    ``bookingguard breaker open`` in one process visible to every other. ``engine``
    and ``redis_client`` reuse existing connections; otherwise the store builds its
    own (a Redis client with the section's short timeout and no client retries).
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
    elif settings.redis_url:
        stores.append(
            RedisStore.from_url(
                settings.redis_url,
                key_prefix=section.redis_key_prefix,
                timeout_seconds=section.redis_timeout_seconds,
            )
        )
    owns_engine = engine is None
    stores.append(
        SqlStore(
            engine or make_engine(settings.database_url),
            clock=clock,
            owns_engine=owns_engine,
        )
    )
    stores.append(MemoryStore(clock=clock))
    return FallbackStore(stores, recheck_seconds=section.store_recheck_seconds)
