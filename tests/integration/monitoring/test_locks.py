"""Job leases: one holder at a time, held for the interval after the job, freed on expiry."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from bookingguard.monitoring.locks import FileJobLock, JobLock, RedisJobLock


@pytest.fixture(params=["redis", "file"])
def lock(request: pytest.FixtureRequest, tmp_path: Path) -> JobLock:
    """A Redis lease store (namespaced) or a lock-file directory."""
    if request.param == "file":
        return FileJobLock(tmp_path / "locks")
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    return RedisJobLock(redis.Redis.from_url(url), prefix=prefix)


def test_second_replica_is_refused_while_the_job_runs(lock: JobLock) -> None:
    """While one replica holds the lease, another cannot take it."""
    first = lock.acquire("check", hold=timedelta(0))
    assert first is not None
    assert lock.acquire("check", hold=timedelta(0)) is None
    lock.release(first)
    again = lock.acquire("check", hold=timedelta(0))
    assert again is not None
    lock.release(again)


def test_lease_is_held_for_the_interval_after_a_quick_job(lock: JobLock) -> None:
    """A job that ends early keeps the tick: no other replica runs it until hold has passed."""
    lease = lock.acquire("check", hold=timedelta(seconds=0.5))
    assert lease is not None
    lock.release(lease)
    assert lock.acquire("check", hold=timedelta(seconds=0.5)) is None
    time.sleep(0.6)
    later = lock.acquire("check", hold=timedelta(seconds=0.5))
    assert later is not None
    lock.release(later)
