"""Statements compiled once, run on the async engine's pooled psycopg connection itself.

The async engine (``make_async_engine``) owns the connections: its pool sizes them,
times out, pings idle ones and replaces dead ones. What this module skips is
SQLAlchemy's execution of each statement (execution context, result set-up,
greenlet hops), three times a booking. ``bench/booking_path.py`` side by side (median
added per booking, runs alternating, on a 2-core host shared with other work; goal
<= 2 ms):

* five rounds at load 3-6: the hand-written psycopg_pool this replaced 2.58 1.95 2.59
  2.37 1.80 ms (median 2.37); the async engine executing the statements itself 4.18
  3.47 3.93 3.52 2.83 (median 3.52, never within the goal); the engine's pool with
  the statements run here 2.20 2.31 2.50 2.79 2.83 (median 2.50).
* five rounds at load 2-4, checking out with ``raw_connection`` as now: psycopg_pool
  1.61 1.75 1.46 1.56 1.56 (median 1.56); ``AsyncStatements`` 1.60 1.97 1.60 1.66 1.65
  (median 1.65).

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
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.util import greenlet_spawn

__all__ = ["AsyncStatements", "PooledConnection"]


@dataclass(frozen=True)
class PooledConnection:
    """A connection checked out of the async engine's pool, and its psycopg connection."""

    pooled: PoolProxiedConnection
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
        """A pooled connection, for the ``async with`` block.

        Straight from the pool (``raw_connection``), without the engine's ``Connection``
        around it: 45 us less per checkout. Its return to the pool, like its checkout,
        runs in SQLAlchemy's greenlet bridge.
        """
        pooled = await self._engine.raw_connection()
        try:
            driver = pooled.driver_connection
            if not isinstance(driver, psycopg.AsyncConnection):
                raise TypeError(f"not a psycopg async connection: {driver!r}")
            yield PooledConnection(pooled, driver)
        finally:
            await greenlet_spawn(pooled.close)

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
                await greenlet_spawn(connection.pooled.invalidate, exc)
            raise DBAPIError.instance(compiled.string, bound, exc, psycopg.Error) from exc
        return row
