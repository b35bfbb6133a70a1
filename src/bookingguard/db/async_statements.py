"""Statements compiled once, run on the async engine's pooled psycopg connection itself.

The async engine (``make_async_engine``) owns the connections: its pool sizes them,
times out, pings idle ones and replaces dead ones. What this module skips is
SQLAlchemy's execution of each statement (execution context, result set-up,
greenlet hops), three times a booking. ``bench/booking_path.py`` side by side
(median added per booking; five rounds, the three runs of a round one after the
other, on a 2-core host shared with other work, load 3-6; goal <= 2 ms):

* psycopg_pool, hand-written (before):      2.58 1.95 2.59 2.37 1.80 ms (median 2.37)
* the async engine executing them itself:   4.18 3.47 3.93 3.52 2.83 ms (median 3.52)
* the async engine's pool, ``AsyncStatements``: 2.20 2.31 2.50 2.79 2.83 ms (median 2.50)

The library alone never met the goal and cost about 1.1 ms more than the hand-written
pool, which met it in two rounds; run this way it costs about 0.1 ms more.

Only the booking path's three statements go this way; no bind or result type
processing happens (their values need none with psycopg and UTC connections).
Errors come out as SQLAlchemy's exceptions, as from the engine, and a connection
the error broke is invalidated, so the pool never hands it out again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy.engine import Compiled
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement

__all__ = ["AsyncStatements", "PooledConnection"]


@dataclass(frozen=True)
class PooledConnection:
    """A connection checked out of the async engine's pool, and its psycopg connection."""

    owner: AsyncConnection
    driver: psycopg.AsyncConnection[Any]


class AsyncStatements:
    """Runs statements, compiled once for ``engine``'s dialect, on its pooled connections."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._compiled: dict[ClauseElement, Compiled] = {}
        #: Statements run so far (the benchmark prints them per booking).
        self.statements = 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[PooledConnection]:
        """A pooled connection, for the ``async with`` block."""
        async with self._engine.connect() as owner:
            raw = await owner.get_raw_connection()
            driver = raw.driver_connection
            if not isinstance(driver, psycopg.AsyncConnection):
                raise TypeError(f"not a psycopg async connection: {driver!r}")
            yield PooledConnection(owner, driver)

    async def first(
        self, connection: PooledConnection, statement: ClauseElement, params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        """``statement``'s first row with ``params``, or None."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = statement.compile(dialect=self._engine.dialect)
        bound = dict(compiled.construct_params(dict(params)) or {})
        self.statements += 1
        driver = connection.driver
        try:
            cursor = await driver.execute(compiled.string, bound)
            row: tuple[Any, ...] | None = await cursor.fetchone()
        except psycopg.Error as exc:
            if driver.broken or driver.closed:
                await connection.owner.invalidate(exc)
            raise DBAPIError.instance(compiled.string, bound, exc, psycopg.Error) from exc
        return row
