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
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import httpx
import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.booking import (
    BookingMetrics,
    BookingService,
    Breaker,
    PostBookingValidator,
    Retrier,
    SqlBookingStore,
    default_booking_metrics,
)
from bookingguard.booking.calls import CallEventRecorder
from bookingguard.booking.claims import ClaimWaiter
from bookingguard.booking.spool_replay import ReplayResult, SpoolReplayer
from bookingguard.calcom import CalcomClient
from bookingguard.clock import utc_now
from bookingguard.db.engine import make_engine
from bookingguard.db.spool import Spool
from bookingguard.db.uow import session_factory
from bookingguard.resilience import CircuitBreaker
from bookingguard.resilience.retry import RetryPolicy, retry_async
from bookingguard.settings import Settings
from bookingguard.urls import ClusterUrl, parse_cluster_url

if TYPE_CHECKING:
    from bookingguard.monitoring.locks import JobLock
    from bookingguard.monitoring.reconcile import BookingSource
    from bookingguard.monitoring.service import MonitoringService

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
    "replay_spool",
    "utc_now",
]

T = TypeVar("T")


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


def build_job_lock(
    settings: Settings, engine: Engine, *, redis_client: BlockingRedisClient | None
) -> JobLock:
    """The scheduler's job leases, shared by every replica that can share them.

    Redis when ``redis_url`` is set (over ``redis_client``, the process's blocking
    client), falling back while Redis is unreachable to what is chosen without it: the
    database's advisory locks when it has them (PostgreSQL: replicas on several
    hosts); else lock files on this host (SQLite), in ``monitoring.lock_dir`` or a
    temporary directory named after the database.
    """
    import hashlib
    import tempfile
    from pathlib import Path

    from bookingguard.db.job_locks import database_locks
    from bookingguard.monitoring.locks import (
        FallbackJobLock,
        FileJobLock,
        HeldLockJobLock,
        RedisJobLock,
    )

    prefix = settings.monitoring.lock_key_prefix
    shared = database_locks(engine, namespace=prefix)
    without_redis: JobLock
    if shared is not None:
        without_redis = HeldLockJobLock(shared)
    elif settings.monitoring.lock_dir:
        without_redis = FileJobLock(Path(settings.monitoring.lock_dir))
    else:
        digest = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
        without_redis = FileJobLock(Path(tempfile.gettempdir()) / f"bookingguard-locks-{digest}")
    if not settings.redis_url:
        return without_redis
    if redis_client is None:
        raise ValueError("redis_url is set: pass the process's Redis client for the leases")
    return FallbackJobLock(RedisJobLock(redis_client, prefix=prefix), without_redis)


def build_monitoring(
    settings: Settings,
    engine: Engine,
    *,
    registry: CollectorRegistry | None = None,
    redis_client: BlockingRedisClient | None = None,
) -> MonitoringService:
    """The monitoring service (checks, alerts, delivery, report) over ``engine``.

    With a Prometheus ``registry`` its metrics are registered there (``/metrics``).
    Its job leases (``build_job_lock``) use ``redis_client`` (the process's blocking
    client); with none and a ``redis_url``, one is built for it (a CLI run that
    builds nothing else).
    """
    from bookingguard.monitoring.metrics import MonitorMetrics
    from bookingguard.monitoring.service import MonitoringService

    metrics = MonitorMetrics(registry) if registry is not None else None

    def booking_source() -> AbstractAsyncContextManager[BookingSource]:
        return calcom_booking_source(settings)

    return MonitoringService(
        session_factory(engine),
        settings,
        metrics=metrics,
        lock=build_job_lock(
            settings,
            engine,
            redis_client=redis_client
            if redis_client is not None or not settings.redis_url
            else build_blocking_redis(settings.redis_url),
        ),
        booking_source=booking_source if settings.calcom.api_key is not None else None,
    )


@asynccontextmanager
async def calcom_booking_source(settings: Settings) -> AsyncIterator[BookingSource]:
    """Cal.com's bookings for reconciliation, over a client closed on exit."""
    from bookingguard.calcom import CalcomNotFoundError
    from bookingguard.monitoring.reconcile import ClientBookingSource

    async with CalcomClient.from_settings(settings) as client:
        yield ClientBookingSource(client, not_found=CalcomNotFoundError)


def build_circuit_breaker(
    settings: Settings,
    engine: Engine,
    *,
    registry: CollectorRegistry | None = None,
    redis_client: AsyncRedisClient | None = None,
) -> CircuitBreaker:
    """The circuit breaker over Redis → SQL (on ``engine``) → memory, audited to ``engine``
    (through this host's spool while the database is down).

    Redis leads when ``redis_client`` (the process's asyncio client) is given.
    """
    return CircuitBreaker.from_settings(
        settings,
        engine=engine,
        redis_client=redis_client,
        registry=registry,
        spool=build_spool(settings),
    )


class PolicyRetrier:
    """``retry_async`` bound to one ``RetryPolicy``: the booking path's ``Retrier``."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> None:
        self.policy = policy
        self.on_retry = on_retry

    async def __call__(
        self,
        fn: Callable[[], Awaitable[T]],
        /,
        *,
        is_retryable: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None],
    ) -> T:
        return await retry_async(
            fn,
            policy=self.policy,
            is_retryable=is_retryable,
            retry_after=retry_after,
            on_retry=self.on_retry,
        )


def build_spool(settings: Settings) -> Spool:
    """This host's spool of failure records and breaker transitions the database could not
    take (``spool.path``)."""
    return Spool(settings.spool.path)


async def replay_spool(settings: Settings, engine: Engine) -> ReplayResult:
    """One replay of the spool into ``engine``'s database (``bookingguard check``).

    With ``redis_url`` set, the breaker's Redis outboxes are drained into the history
    first, as ``serve``'s replay does: transitions whose replies no process received.
    """
    store = SqlBookingStore(session_factory(engine))
    redis_clients = build_redis(settings)
    breaker = build_circuit_breaker(
        settings,
        engine,
        redis_client=redis_clients.asyncio if redis_clients is not None else None,
    )
    try:
        return await SpoolReplayer(
            spool=build_spool(settings), store=store, transitions=breaker.audit
        ).replay()
    finally:
        await store.aclose()
        await breaker.aclose()
        if redis_clients is not None:
            await redis_clients.aclose()


def build_booking_service(
    settings: Settings,
    *,
    sessions: sessionmaker[Session],
    calcom: CalcomClient,
    breaker: Breaker,
    retrier: Retrier,
    clock: Callable[[], datetime] = utc_now,
    metrics: BookingMetrics | None = None,
    spool: Spool | None = None,
) -> BookingService:
    """The booking path: Cal.com client under the breaker and retry, validator, rollback,
    and failure records spooled (``build_spool``) while the database is down."""
    metrics = metrics if metrics is not None else default_booking_metrics()
    validator = PostBookingValidator(
        max_appointment_age_seconds=settings.validation.max_appointment_age_seconds,
        clock=clock,
        metrics=metrics,
    )
    store = SqlBookingStore(sessions)
    return BookingService(
        store=store,
        calcom=calcom,
        breaker=breaker,
        retrier=retrier,
        validator=validator,
        clock=clock,
        spool=spool if spool is not None else build_spool(settings),
        metrics=metrics,
        claims=ClaimWaiter(store, wait_seconds=settings.validation.claim_wait_seconds),
        claim_stale_seconds=settings.validation.claim_stale_seconds,
    )


@dataclass
class Services:
    """Everything the HTTP app and the CLI reach: built once, closed once."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    calcom: CalcomClient
    breaker: CircuitBreaker | None
    booking: BookingService
    call_events: CallEventRecorder
    clock: Callable[[], datetime]
    spool: Spool
    spool_replayer: SpoolReplayer
    redis: RedisClients | None = None

    async def aclose(self) -> None:
        await self.calcom.aclose()
        await self.booking.aclose()
        if self.breaker is not None:
            await self.breaker.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        self.engine.dispose()


def build_services(
    settings: Settings,
    *,
    breaker: Breaker | None = None,
    retrier: Retrier | None = None,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = utc_now,
    calcom_transport: httpx.AsyncBaseTransport | None = None,
    metrics: BookingMetrics | None = None,
    redis_clients: RedisClients | None = None,
) -> Services:
    """Build the services for ``settings`` (the caller closes them with ``aclose()``).

    By default the booking path runs under ``CircuitBreaker.from_settings`` (Redis →
    SQL → memory) and ``retry_async`` with ``RetryPolicy.from_settings``; tests may
    hand in their own ``breaker`` and ``retrier``. The Services own (and close) the
    ``redis_clients`` given or, when ``redis_url`` is set, the ones built here.
    """
    engine = engine if engine is not None else build_engine(settings)
    redis_clients = redis_clients if redis_clients is not None else build_redis(settings)
    sessions = session_factory(engine)
    metrics = metrics if metrics is not None else default_booking_metrics()
    calcom = CalcomClient.from_settings(settings, transport=calcom_transport)
    spool = build_spool(settings)
    circuit_breaker: CircuitBreaker | None = None
    if breaker is None:
        circuit_breaker = build_circuit_breaker(
            settings,
            engine,
            redis_client=redis_clients.asyncio if redis_clients is not None else None,
        )
        breaker = circuit_breaker
    booking = build_booking_service(
        settings,
        sessions=sessions,
        calcom=calcom,
        breaker=breaker,
        retrier=retrier
        or PolicyRetrier(RetryPolicy.from_settings(settings), on_retry=metrics.record_retry),
        clock=clock,
        metrics=metrics,
        spool=spool,
    )
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        calcom=calcom,
        breaker=circuit_breaker,
        booking=booking,
        call_events=CallEventRecorder(
            sessions, clock=clock, outcome_mapping=settings.retell.outcome_mapping
        ),
        clock=clock,
        spool=spool,
        spool_replayer=SpoolReplayer(
            spool=spool,
            store=booking.store,
            metrics=metrics,
            transitions=breaker.audit if isinstance(breaker, CircuitBreaker) else None,
        ),
        redis=redis_clients,
    )
