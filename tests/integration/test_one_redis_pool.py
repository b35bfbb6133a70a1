"""One composition root: a served process holds one asyncio and one blocking Redis pool."""

from __future__ import annotations

import pytest
from limits.storage import RedisStorage

from bookingguard.api.context import OperatorContext
from bookingguard.api.server import build_server_app
from bookingguard.api.v1.backends import ApiBackends
from bookingguard.bootstrap import Services
from bookingguard.monitoring.locks import FallbackJobLock, RedisJobLock
from bookingguard.resilience import RedisStore
from bookingguard.resilience.stores.fallback import FallbackStore
from bookingguard.settings import Settings
from tests.conftest import TestDatabase


@pytest.mark.redis
async def test_every_component_shares_the_process_redis_clients(
    database: TestDatabase, redis_url: str, redis_prefix: str
) -> None:
    """Breaker store, readiness, rate limiter and job leases all use bootstrap's two pools."""
    settings = Settings(database_url=database.url, redis_url=redis_url)
    app = build_server_app(settings, engine=database.engine)
    backends: ApiBackends = app.state.backends
    services: Services = app.state.services
    operator: OperatorContext = app.state.operator
    assert services.redis is not None
    shared_async, shared_blocking = services.redis.asyncio, services.redis.blocking

    chain = backends.breaker.store
    assert isinstance(chain, FallbackStore)
    redis_store = chain.stores[0]
    assert isinstance(redis_store, RedisStore)
    assert redis_store._client is shared_async

    storage = operator.rate_limiter.storage
    assert isinstance(storage, RedisStorage)
    assert storage.storage.connection_pool is shared_blocking.connection_pool

    lock = backends.monitoring.lock
    assert isinstance(lock, FallbackJobLock)
    assert isinstance(lock.primary, RedisJobLock)
    assert lock.primary._redis is shared_blocking

    assert shared_async.connection_pool is not shared_blocking.connection_pool
    await services.aclose()
