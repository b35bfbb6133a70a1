"""Fixtures for the breaker suites: one store of each kind, and a local HTTP dependency."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.cluster import ClusterNode

from bookingguard.bootstrap import build_async_redis
from bookingguard.resilience import (
    BreakerEvent,
    BreakerPolicy,
    BreakerStore,
    CircuitBreaker,
    MemoryStore,
    RedisStore,
    SqlStore,
)
from bookingguard.urls import parse_cluster_url
from tests.conftest import TestDatabase, _make_database

STORE_KINDS = ["memory", "redis", "sql-sqlite", "sql-postgresql"]


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


#: Fields of a circuit's Redis hash that hold a moment (epoch ms).
_REDIS_MOMENTS = ("opened", "open_until", "last_failure", "closed")


def decoding_client(redis_url: str) -> redis.Redis | redis.RedisCluster:
    """A client of the test's Redis answering in text: one server's, or a cluster's."""
    cluster = parse_cluster_url(redis_url)
    if cluster is None:
        return redis.Redis.from_url(redis_url, decode_responses=True)
    return redis.RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],  # type: ignore[no-untyped-call]
        decode_responses=True,
    )


def age_redis_circuits(redis_url: str, prefix: str, seconds: float) -> None:
    """Move the circuits under ``prefix`` ``seconds`` into the past, as if that time had passed.

    The Redis store's clock is the server's ``TIME``, which a test cannot set: instead
    each stored moment moves back, and each probe lease's TTL shrinks (a lease that
    runs out is deleted, as Redis would expire it).
    """
    client = decoding_client(redis_url)
    shift = round(seconds * 1000)
    for key in client.scan_iter(match=f"{prefix}*"):
        if client.type(key) == "hash":
            stored = dict(zip(_REDIS_MOMENTS, client.hmget(key, _REDIS_MOMENTS), strict=True))
            moved = {name: int(value) - shift for name, value in stored.items() if value}
            if moved:
                client.hset(key, mapping=moved)
        else:
            left = int(client.pttl(key)) - shift
            if left > 0:
                client.pexpire(key, left)
            else:
                client.delete(key)
    client.close()


def delete_keys(redis_url: str, prefix: str) -> None:
    """Remove one test's keys (never FLUSHDB: the database is shared)."""
    client = decoding_client(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@dataclass
class StoreFactory:
    """Builds stores of one kind that share state (like processes sharing Redis or a DB)."""

    kind: str
    redis_url: str = ""
    prefix: str = ""
    database: TestDatabase | None = None
    #: the clock of the memory and SQL stores (Redis keeps its own: see ``advance``)
    clock: FakeClock = field(default_factory=FakeClock)
    _memory: MemoryStore | None = None

    def __call__(self) -> BreakerStore:
        if self.kind == "memory":
            self._memory = self._memory or MemoryStore(clock=self.clock)
            return self._memory
        if self.kind == "redis":
            return RedisStore(
                build_async_redis(self.redis_url, timeout_seconds=0.1), key_prefix=self.prefix
            )
        assert self.database is not None
        return SqlStore(self.database.engine, clock=self.clock)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for every store this factory built."""
        if self.kind == "redis":
            age_redis_circuits(self.redis_url, self.prefix, seconds)
        else:
            self.clock.advance(seconds)


@pytest.fixture(params=STORE_KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of stores of each kind in turn: memory, Redis, SQL on SQLite and PostgreSQL."""
    kind: str = request.param
    if kind == "memory":
        yield StoreFactory(kind)
    elif kind == "redis":
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("redis_prefix")
        yield StoreFactory(kind, redis_url=url, prefix=prefix)
        delete_keys(url, prefix)
    else:
        yield from (
            StoreFactory(kind, database=database)
            for database in _make_database(kind.removeprefix("sql-"), request, tmp_path)
        )


@dataclass
class Harness:
    """A breaker over one store, recording its events.

    ``advance`` lets time pass for the store; ``monotonic`` is the breaker's own
    clock for call durations.
    """

    breaker: CircuitBreaker
    store: BreakerStore
    advance: Callable[[float], None]
    monotonic: FakeClock
    events: list[BreakerEvent] = field(default_factory=list)

    def transitions(self) -> list[tuple[str, str, str]]:
        return [
            (e.transition.from_state, e.transition.to_state, e.transition.reason)
            for e in self.events
            if e.transition is not None
        ]


@pytest.fixture
async def make_harness(
    store_factory: StoreFactory,
) -> AsyncIterator[Callable[[BreakerPolicy], Harness]]:
    """Build breakers over the parametrized store; closes them afterwards."""
    built: list[Harness] = []

    def build(policy: BreakerPolicy) -> Harness:
        store, monotonic = store_factory(), FakeClock(start=0.0)
        breaker = CircuitBreaker(
            store, policy=policy, registry=CollectorRegistry(), monotonic=monotonic
        )
        harness = Harness(breaker, store, store_factory.advance, monotonic)
        harness.breaker.add_listener(harness.events.append)
        built.append(harness)
        return harness

    yield build
    for harness in built:
        await harness.breaker.aclose()


class CountingServer:
    """A local HTTP dependency that counts requests and answers after ``delay`` seconds.

    ``arrivals`` holds when each request came in (epoch seconds).
    """

    def __init__(self, *, delay: float = 0.0, status: int = 200) -> None:
        self.delay = delay
        self.status = status
        self.count = 0
        self.arrivals: list[float] = []
        self.requested = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.count += 1
                    outer.arrivals.append(time.time())
                outer.requested.set()
                time.sleep(outer.delay)
                body = b"ok"
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CountingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
