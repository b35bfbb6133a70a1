"""Job leases, so one replica runs each scheduled job per interval.

A lease is taken for a job name and held while the job runs and, after it ends,
until ``hold`` has passed since it was taken: the other replicas skip that tick.
Three kinds, chosen by ``bootstrap``: Redis (``SET NX PX`` and a compare-and-delete
script) when configured; else locks the shared database holds for a connection's
lifetime (``HeldLockJobLock``), so replicas on several hosts still run each job
once; else an ``flock``-ed file, enough for the embedded default on one host.
Redis's leases fall back to the kind chosen without it while Redis is unreachable
(``FallbackJobLock``): an outage of Redis does not stop the monitor.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Protocol

import redis

from bookingguard.redis_scripts import node_local

__all__ = [
    "FallbackJobLock",
    "FileJobLock",
    "HeldLock",
    "HeldLockJobLock",
    "HeldLocks",
    "JobLock",
    "Lease",
    "RedisJobLock",
]

log = logging.getLogger(__name__)

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
    """Leases in Redis, shared by every replica.

    A lease is one key (``prefix`` + job name) and the release script touches that key
    alone, so on a Redis Cluster each lease lives on the node owning its slot (and the
    script, a ``NodeLocalScript``, needs only that node).
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        prefix: str = "bookingguard:job:",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._monotonic = monotonic
        self._release = node_local(client.register_script(_RELEASE))

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


class FallbackJobLock:
    """Redis's leases while Redis answers; ``fallback``'s (the kind the configuration
    chooses without Redis) while it does not.

    A job whose lease Redis cannot give would otherwise not run anywhere: with Redis
    down, every replica's scheduled check and ``bookingguard check`` itself stopped.
    Replicas that share the database share its locks as they share Redis, so each job
    still runs once between them; only replicas split from Redis differently (one
    reaching it, one not) may both run it, as two writers the database serialises. A
    lease goes back to the lock that gave it; a Redis lease that cannot be given back
    expires on its own (``RUNNING_TTL`` at most after it was taken). The switch is
    logged each way once, not at every lease (the delivery job takes one every 2 s).
    """

    def __init__(self, primary: RedisJobLock, fallback: JobLock) -> None:
        self.primary = primary
        self.fallback = fallback
        self._givers: dict[str, JobLock] = {}
        self._mutex = threading.Lock()
        self._falling_back = False

    def acquire(self, name: str, *, hold: timedelta) -> Lease | None:
        giver: JobLock = self.primary
        try:
            lease = self.primary.acquire(name, hold=hold)
        except redis.RedisError as exc:
            if not self._falling_back:
                log.warning("redis unreachable: job leases taken from the fallback: %s", exc)
            self._falling_back = True
            giver = self.fallback
            lease = self.fallback.acquire(name, hold=hold)
        else:
            if self._falling_back:
                log.warning("redis answers again: job leases taken from redis")
            self._falling_back = False
        if lease is not None:
            with self._mutex:
                self._givers[lease.token] = giver
        return lease

    def release(self, lease: Lease) -> None:
        with self._mutex:
            giver = self._givers.pop(lease.token, self.primary)
        try:
            giver.release(lease)
        except redis.RedisError as exc:
            log.warning(
                "could not give the lease of job %s back to redis, it expires: %s", lease.name, exc
            )


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


class HeldLock(Protocol):
    def release(self) -> None: ...


class HeldLocks(Protocol):
    """Named locks held until released or until the process holding them dies."""

    def try_hold(self, name: str) -> HeldLock | None: ...


class HeldLockJobLock:
    """Leases over ``HeldLocks`` (the shared database's), kept until ``hold`` has passed.

    Such a lock has no expiry of its own: a lease released before its ``hold`` is
    over stays held, and is let go by the first ``acquire`` here after that time.
    Every replica calls ``acquire`` at each tick of the check, so a lingering lease
    is freed within one check interval of its end; a replica that dies frees its
    locks with its connections.
    """

    def __init__(
        self, locks: HeldLocks, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._locks = locks
        self._monotonic = monotonic
        self._held: dict[str, HeldLock] = {}
        self._lingering: dict[str, tuple[HeldLock, float]] = {}
        self._mutex = threading.Lock()

    def acquire(self, name: str, *, hold: timedelta) -> Lease | None:
        self._let_go_of_expired()
        held = self._locks.try_hold(name)
        if held is None:
            return None
        token = uuid.uuid4().hex
        with self._mutex:
            self._held[token] = held
        return Lease(name=name, token=token, taken_at=self._monotonic(), hold=hold)

    def release(self, lease: Lease) -> None:
        with self._mutex:
            held = self._held.pop(lease.token, None)
            if held is None:
                return
            until = lease.taken_at + lease.hold.total_seconds()
            if self._monotonic() < until:
                self._lingering[lease.token] = (held, until)
                return
        held.release()

    def close(self) -> None:
        """Let go of every lease still kept for its ``hold``."""
        with self._mutex:
            lingering, self._lingering = list(self._lingering.values()), {}
        for held, _ in lingering:
            held.release()

    def _let_go_of_expired(self) -> None:
        now = self._monotonic()
        with self._mutex:
            expired = [token for token, (_, until) in self._lingering.items() if until <= now]
            due = [self._lingering.pop(token)[0] for token in expired]
        for held in due:
            held.release()
