"""Locks held in the database for as long as a connection lives: PostgreSQL advisory locks.

Replicas on several hosts that share one PostgreSQL and no Redis take the
scheduler's job leases here. ``pg_try_advisory_lock`` on a connection of its own
(outside the pool: a pooled connection would carry the lock back into the pool)
holds the lock until it is unlocked or the connection closes, so a replica that
dies mid-job frees it with its connection. SQLite has no such lock: one file is one
host, where a lock file does the same (``database_locks`` answers None).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, Engine, text

from bookingguard.db.dialects import dialect_of
from bookingguard.db.dialects.postgresql import PostgresDialect
from bookingguard.db.engine import make_engine

__all__ = ["AdvisoryLocks", "HeldAdvisoryLock", "database_locks", "lock_key"]


def lock_key(name: str) -> int:
    """The signed 64-bit key of ``name`` (advisory locks are keyed by a ``bigint``)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class HeldAdvisoryLock:
    """One advisory lock and the connection holding it."""

    def __init__(self, connection: Connection, key: int) -> None:
        self._connection = connection
        self._key = key

    def release(self) -> None:
        """Unlock and close the connection (closing alone would free it too)."""
        try:
            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
        finally:
            self._connection.close()


class AdvisoryLocks:
    """Session-level PostgreSQL advisory locks, each on a connection of its own."""

    def __init__(self, engine: Engine, *, namespace: str = "bookingguard:job:") -> None:
        url = engine.url.render_as_string(hide_password=False)
        self._engine = make_engine(url, pool=False)
        self._namespace = namespace

    def try_hold(self, name: str) -> HeldAdvisoryLock | None:
        """The lock named ``name`` if no other session holds it, else None (never waits)."""
        key = lock_key(self._namespace + name)
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            taken = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
            ).scalar_one()
        except BaseException:
            connection.close()
            raise
        if not taken:
            connection.close()
            return None
        return HeldAdvisoryLock(connection, key)

    def dispose(self) -> None:
        """Close the engine's resources (held locks keep their own connections)."""
        self._engine.dispose()


def database_locks(engine: Engine, *, namespace: str = "bookingguard:job:") -> AdvisoryLocks | None:
    """Advisory locks shared by every process on ``engine``'s database, if it has them."""
    if isinstance(dialect_of(engine), PostgresDialect):
        return AdvisoryLocks(engine, namespace=namespace)
    return None
