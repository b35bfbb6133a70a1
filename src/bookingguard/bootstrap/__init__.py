"""Composition root: builds engines, clients, stores and services from ``Settings``.

Nothing is built at import time; the CLI and the HTTP app call these functions.
Nothing else in the package builds an engine or a Redis client: the rest take them
as arguments. A process has one engine and, when ``redis_url`` is set, one
``RedisClients``: an asyncio pool for the breaker store and the readiness check,
and a blocking pool for the rate limiter and the job leases. Two, because those
two run outside the event loop (``limits``' synchronous storage in a sync request
dependency, the leases in the scheduler's worker threads) and an asyncio client
belongs to one event loop. A ``redis+cluster://`` URL (``urls.parse_cluster_url``)
makes both of them redis-py's cluster clients, which route each command to the
node that owns its key's slot; everything that takes them takes either kind.

``clients`` builds the engine and the Redis clients, ``booking`` the booking path,
``monitoring`` the monitoring service and its leases, ``services`` all of them at once.
"""

from __future__ import annotations

from bookingguard.bootstrap.booking import (
    PolicyRetrier,
    build_booking_service,
    build_circuit_breaker,
    build_spool,
    circuit_breaker_in_use,
    replay_spool,
)
from bookingguard.bootstrap.clients import (
    AsyncRedisClient,
    BlockingRedisClient,
    RedisClients,
    build_async_redis,
    build_blocking_redis,
    build_engine,
    build_redis,
)
from bookingguard.bootstrap.monitoring import (
    build_job_lock,
    build_monitoring,
    calcom_booking_source,
)
from bookingguard.bootstrap.services import Services, build_services
from bookingguard.clock import utc_now

__all__ = [
    "AsyncRedisClient",
    "BlockingRedisClient",
    "PolicyRetrier",
    "RedisClients",
    "Services",
    "build_async_redis",
    "build_blocking_redis",
    "build_booking_service",
    "build_circuit_breaker",
    "build_engine",
    "build_job_lock",
    "build_monitoring",
    "build_redis",
    "build_services",
    "build_spool",
    "calcom_booking_source",
    "circuit_breaker_in_use",
    "replay_spool",
    "utc_now",
]
