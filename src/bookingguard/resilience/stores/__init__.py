"""Breaker stores: memory (one process), Redis (Lua), SQL, and the fallback chain."""

from bookingguard.resilience.stores.base import BreakerStore
from bookingguard.resilience.stores.factory import store_from_settings
from bookingguard.resilience.stores.fallback import FallbackStore
from bookingguard.resilience.stores.memory import MemoryStore
from bookingguard.resilience.stores.redis import RedisStore
from bookingguard.resilience.stores.sql import SqlStore

__all__ = [
    "BreakerStore",
    "FallbackStore",
    "MemoryStore",
    "RedisStore",
    "SqlStore",
    "store_from_settings",
]
