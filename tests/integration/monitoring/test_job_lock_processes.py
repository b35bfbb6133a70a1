"""Job leases across processes, each with its own engine: one runner, freed when it dies.

Without Redis, replicas sharing a PostgreSQL take PostgreSQL advisory locks and
replicas of the embedded SQLite default take lock files; ``build_job_lock`` chooses.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import timedelta
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from queue import Queue

import pytest

from bookingguard.bootstrap import build_blocking_redis, build_engine, build_job_lock
from bookingguard.monitoring.locks import (
    FallbackJobLock,
    FileJobLock,
    HeldLockJobLock,
    RedisJobLock,
)
from bookingguard.settings import Settings
from tests.conftest import TestDatabase

WORKERS = 3
#: Long enough for any process start; reached only when a test is failing.
PATIENCE_SECONDS = 60


def _settings(url: str, lock_dir: Path) -> Settings:
    return Settings(database_url=url, monitoring={"lock_dir": str(lock_dir)})


def _replica(url: str, lock_dir: Path, start: Barrier, tried: Barrier, ran: Queue[bool]) -> None:
    """One replica's scheduler tick: take the 'check' lease, keep it until all have tried."""
    settings = _settings(url, lock_dir)
    engine = build_engine(settings)
    lock = build_job_lock(settings, engine, redis_client=None)
    start.wait(PATIENCE_SECONDS)
    lease = lock.acquire("check", hold=timedelta(0))
    ran.put(lease is not None)
    tried.wait(PATIENCE_SECONDS)
    if lease is not None:
        lock.release(lease)
    engine.dispose()


def _holder(url: str, lock_dir: Path, holding: Event) -> None:
    """Takes the 'check' lease and keeps it until the process is killed."""
    settings = _settings(url, lock_dir)
    lock = build_job_lock(settings, build_engine(settings), redis_client=None)
    lease = lock.acquire("check", hold=timedelta(hours=1))
    assert lease is not None
    holding.set()
    # Killed while it waits here; the lease (and its lock file, on SQLite) stays referenced.
    threading.Event().wait(PATIENCE_SECONDS)
    lock.release(lease)


@pytest.fixture
def database_url(database: TestDatabase) -> str:
    return database.url


def test_one_replica_of_several_runs_the_job(database_url: str, tmp_path: Path) -> None:
    """Processes with their own engines take the lease at once: exactly one gets it."""
    context = multiprocessing.get_context("spawn")
    start, tried = context.Barrier(WORKERS), context.Barrier(WORKERS)
    ran: Queue[bool] = context.Queue()
    processes = [
        context.Process(target=_replica, args=(database_url, tmp_path, start, tried, ran))
        for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    outcomes = [ran.get(timeout=PATIENCE_SECONDS) for _ in processes]
    for process in processes:
        process.join(PATIENCE_SECONDS)
    assert sorted(outcomes) == [False] * (WORKERS - 1) + [True]
    assert [process.exitcode for process in processes] == [0] * WORKERS


def test_a_replica_that_dies_frees_its_lease(database_url: str, tmp_path: Path) -> None:
    """A killed holder's lease (an hour's hold) is free again: its connection or file closed."""
    context = multiprocessing.get_context("spawn")
    holding = context.Event()
    holder = context.Process(target=_holder, args=(database_url, tmp_path, holding))
    holder.start()
    assert holding.wait(PATIENCE_SECONDS)
    settings = _settings(database_url, tmp_path)
    engine = build_engine(settings)
    lock = build_job_lock(settings, engine, redis_client=None)
    assert lock.acquire("check", hold=timedelta(0)) is None
    holder.kill()
    holder.join(PATIENCE_SECONDS)
    # The server notices the closed connection on its own schedule: ask until it has.
    deadline = time.monotonic() + PATIENCE_SECONDS
    lease = lock.acquire("check", hold=timedelta(0))
    while lease is None and time.monotonic() < deadline:
        lease = lock.acquire("check", hold=timedelta(0))
    assert lease is not None
    lock.release(lease)
    engine.dispose()


def test_the_lock_follows_the_configuration(
    database: TestDatabase, tmp_path: Path, redis_url: str
) -> None:
    """Redis when configured, falling back to what is chosen without it: advisory locks on
    PostgreSQL, lock files on SQLite."""
    settings = _settings(database.url, tmp_path)
    lock = build_job_lock(settings, database.engine, redis_client=None)
    expected = HeldLockJobLock if database.dialect == "postgresql" else FileJobLock
    assert type(lock) is expected
    client = build_blocking_redis(redis_url)
    with_redis = settings.model_copy(update={"redis_url": redis_url})
    chosen = build_job_lock(with_redis, database.engine, redis_client=client)
    assert isinstance(chosen, FallbackJobLock)
    assert isinstance(chosen.primary, RedisJobLock)
    assert type(chosen.fallback) is expected
    client.close()
