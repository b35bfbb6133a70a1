"""Job leases, so one replica runs each scheduled job per interval.

A lease is taken for a job name and held while the job runs and, after it ends,
until ``hold`` has passed since it was taken: the other replicas skip that tick.
Redis (``SET NX PX`` and a compare-and-delete script) when configured; otherwise
an ``flock``-ed file, which is enough for the embedded default deployment on one host.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Protocol

import redis

from bookingguard.settings import Settings

__all__ = ["FileJobLock", "JobLock", "Lease", "RedisJobLock", "job_lock_from_settings"]

#: How long a lease survives a replica that died while running the job (runs take seconds).
RUNNING_TTL = timedelta(minutes=2)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    local rest = tonumber(ARGV[2])
    if rest > 0 then return redis.call('PEXPIRE', KEYS[1], rest) end
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass
class Lease:
    name: str
    token: str
    taken_at: float
    hold: timedelta
    handle: IO[str] | None = None


class JobLock(Protocol):
    def acquire(self, name: str, *, hold: timedelta) -> Lease | None: ...

    def release(self, lease: Lease) -> None: ...


class RedisJobLock:
    """Leases in Redis, shared by every replica."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "bookingguard:job:",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._monotonic = monotonic
        self._release = client.register_script(_RELEASE)

    def acquire(self, name: str, *, hold: timedelta) -> Lease | None:
        token = uuid.uuid4().hex
        ttl = int(max(hold, RUNNING_TTL).total_seconds() * 1000)
        if not self._redis.set(self._prefix + name, token, nx=True, px=ttl):
            return None
        return Lease(name=name, token=token, taken_at=self._monotonic(), hold=hold)

    def release(self, lease: Lease) -> None:
        elapsed = self._monotonic() - lease.taken_at
        rest_ms = int((lease.hold.total_seconds() - elapsed) * 1000)
        self._release(keys=[self._prefix + lease.name], args=[lease.token, max(rest_ms, 0)])


class FileJobLock:
    """Leases as locked files holding the time the job last started (one host only)."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._directory = directory
        self._clock = clock
        directory.mkdir(parents=True, exist_ok=True)

    def acquire(self, name: str, *, hold: timedelta) -> Lease | None:
        handle = open(self._directory / f"{name}.lock", "a+")  # noqa: SIM115 - held by the lease
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        handle.seek(0)
        last = handle.read().strip()
        now = self._clock()
        if last and now - float(last) < hold.total_seconds():
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
            return None
        handle.seek(0)
        handle.truncate()
        handle.write(repr(now))
        handle.flush()
        os.fsync(handle.fileno())
        token = uuid.uuid4().hex
        return Lease(name=name, token=token, taken_at=time.monotonic(), hold=hold, handle=handle)

    def release(self, lease: Lease) -> None:
        if lease.handle is not None:
            fcntl.flock(lease.handle, fcntl.LOCK_UN)
            lease.handle.close()


def job_lock_from_settings(settings: Settings, *, redis_client: redis.Redis | None) -> JobLock:
    """Redis leases when ``redis_url`` is set (over ``redis_client``), else lock files here.

    The client is the process's blocking one, built by ``bootstrap``; a configured
    ``redis_url`` with no client is a mistake, not a reason to lock one host only.
    """
    if settings.redis_url:
        if redis_client is None:
            raise ValueError("redis_url is set: pass the process's Redis client for the leases")
        return RedisJobLock(redis_client, prefix=settings.monitoring.lock_key_prefix)
    if settings.monitoring.lock_dir:
        return FileJobLock(Path(settings.monitoring.lock_dir))
    digest = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
    return FileJobLock(Path(tempfile.gettempdir()) / f"bookingguard-locks-{digest}")
