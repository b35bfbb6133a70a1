"""SQLAlchemy's async engine (psycopg) beside an engine's PostgreSQL database, for the booking path.

A booking waits on three statements: the look-up, the write and the read-back. Run
through the sync engine in a worker thread, each pays a hop to the thread and back
on top of its round trip; on the async engine they run on the event loop.

The async engine is set up like the sync one (``make_engine``): a pool of the same
size, libpq's ``connect_timeout`` (the URL's, else ``CONNECT_TIMEOUT_SECONDS``), a
caller waiting for a pooled connection no longer than that, and a connection pinged
only after sitting idle for ``IDLE_PING_SECONDS`` (``pool_pre_ping`` would ping on
every checkout, a round trip costing more than the statement it guards). Its
connections run in autocommit, each statement its own transaction, with UTC as
their time zone. Errors are SQLAlchemy's exceptions, as from the sync engine.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bookingguard.db.engine import CONNECT_TIMEOUT_SECONDS, ping_idle_connections

__all__ = ["make_async_engine"]

#: Like the sync engine's pool (``make_engine``).
POOL_SIZE = 10
MAX_OVERFLOW = 20


def make_async_engine(engine: Engine) -> AsyncEngine:
    """An async engine (psycopg) for ``engine``'s PostgreSQL database, in autocommit."""
    url = engine.url.set(drivername="postgresql+psycopg")
    given = url.query.get("connect_timeout")
    connect_timeout = int(given) if isinstance(given, str) else CONNECT_TIMEOUT_SECONDS
    async_engine = create_async_engine(
        url,
        isolation_level="AUTOCOMMIT",
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        # A caller waits for a pooled connection no longer than for a new one
        # (the pool's default is 30 s).
        pool_timeout=connect_timeout,
        connect_args={"connect_timeout": connect_timeout, "options": "-c timezone=UTC"},
    )
    ping_idle_connections(async_engine.sync_engine)
    return async_engine
