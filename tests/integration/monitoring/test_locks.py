"""Job leases: one holder at a time, held for the interval after the job, freed on expiry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from bookingguard.bootstrap import build_blocking_redis
from bookingguard.db.job_locks import AdvisoryLocks
from bookingguard.monitoring.locks import (
    FallbackJobLock,
    FileJobLock,
    HeldLockJobLock,
    JobLock,
    RedisJobLock,
)
from tests.conftest import TestDatabase
from tests.support.redis_server import free_port


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Leases:
    lock: JobLock
    clock: FakeClock
    client: redis.Redis | None = None
    prefix: str = ""


@pytest.fixture(params=["redis", "file", "advisory"])
def leases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Leases]:
    """A Redis lease store (namespaced), a lock-file directory or PostgreSQL advisory locks,
    on a fake clock."""
    clock = FakeClock()
    if request.param == "file":
        yield Leases(FileJobLock(tmp_path / "locks", clock=clock), clock)
        return
    if request.param == "advisory":
        database: TestDatabase = request.getfixturevalue("postgres_database")
        lock = HeldLockJobLock(AdvisoryLocks(database.engine), monotonic=clock)
        yield Leases(lock, clock)
        lock.close()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    client = build_blocking_redis(url)
    yield Leases(RedisJobLock(client, prefix=prefix, monotonic=clock), clock, client, prefix)
    client.close()


def test_second_replica_is_refused_while_the_job_runs(leases: Leases) -> None:
    """While one replica holds the lease, another cannot take it."""
    lock = leases.lock
    first = lock.acquire("check", hold=timedelta(0))
    assert first is not None
    assert lock.acquire("check", hold=timedelta(0)) is None
    lock.release(first)
    again = lock.acquire("check", hold=timedelta(0))
    assert again is not None
    lock.release(again)


def test_lease_is_held_for_the_interval_after_a_quick_job(leases: Leases) -> None:
    """A job that ends early keeps the tick: no other replica runs it until hold has passed.

    Redis frees the lease itself when the rest of the hold runs out: the test reads
    that expiry (PTTL) instead of waiting for it; the lock file is read against the clock.
    """
    lock = leases.lock
    lease = lock.acquire("check", hold=timedelta(seconds=0.5))
    assert lease is not None
    leases.clock.now += 0.2
    lock.release(lease)
    assert lock.acquire("check", hold=timedelta(seconds=0.5)) is None
    if leases.client is not None:
        assert 0 < leases.client.pttl(leases.prefix + "check") <= 300
        leases.client.delete(leases.prefix + "check")
    else:
        leases.clock.now += 0.4
    later = lock.acquire("check", hold=timedelta(seconds=0.5))
    assert later is not None
    lock.release(later)


def test_leases_fall_back_while_redis_is_unreachable(
    redis_url: str, redis_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis gives the lease while it answers (the fallback stays free); while it does not,
    the fallback does, and holds it against a second replica; each goes back where it
    came from. The switch is logged once, not at every lease."""
    clock = FakeClock()
    fallback = FileJobLock(tmp_path / "locks", clock=clock)
    live = build_blocking_redis(redis_url)
    dead = build_blocking_redis(f"redis://127.0.0.1:{free_port()}/0")
    up = FallbackJobLock(RedisJobLock(live, prefix=redis_prefix, monotonic=clock), fallback)
    down = FallbackJobLock(RedisJobLock(dead, prefix=redis_prefix, monotonic=clock), fallback)
    try:
        in_redis = up.acquire("check", hold=timedelta(0))
        assert in_redis is not None
        assert live.get(redis_prefix + "check") == in_redis.token.encode()
        in_fallback = down.acquire("check", hold=timedelta(0))
        assert in_fallback is not None
        assert in_fallback.handle is not None
        assert down.acquire("check", hold=timedelta(0)) is None
        down.release(in_fallback)
        up.release(in_redis)
        assert live.exists(redis_prefix + "check") == 0
        again = down.acquire("check", hold=timedelta(0))
        assert again is not None
        down.release(again)
        switches = [r.getMessage() for r in caplog.records if r.name.endswith(".locks")]
        assert len(switches) == 1
        assert switches[0].startswith("redis unreachable: job leases taken from the fallback")
    finally:
        live.close()
        dead.close()
