"""Engine construction: SQLite (foreign keys on, WAL, real transactions) and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolProxiedConnection

from bookingguard.errors import DatabaseUnavailableError
from bookingguard.urls import mask_url

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "IDLE_PING_SECONDS",
    "SQLITE_BEGIN_OPTION",
    "check_connection",
    "make_engine",
    "outside_transaction",
    "ping_idle_connections",
]

#: Execution option naming the SQLite BEGIN mode (``DEFERRED``, ``IMMEDIATE``, ``EXCLUSIVE``).
SQLITE_BEGIN_OPTION = "sqlite_begin"
_SQLITE_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})
#: A pooled PostgreSQL connection idle this long is pinged before it is handed out.
IDLE_PING_SECONDS = 2.0
#: How long a new PostgreSQL connection may take before it fails, unless the URL sets
#: libpq's ``connect_timeout`` itself: a server that accepts and never answers would
#: otherwise hold a request (or ``/readyz``) until the kernel gives up, minutes later.
CONNECT_TIMEOUT_SECONDS = 5
_LAST_USED = "bookingguard_last_used"


def make_engine(url: str, *, pool: bool = True, echo: bool = False) -> Engine:
    """Build an engine for ``url`` with the per-dialect settings bookingguard relies on."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if not pool:
            kwargs["poolclass"] = NullPool
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    if "connect_timeout" not in parsed.query:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    if not pool:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(pool_size=10, max_overflow=20)
    engine = create_engine(url, **kwargs)
    if pool:
        ping_idle_connections(engine)
    return engine


def ping_idle_connections(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it has sat idle for a while.

    ``pool_pre_ping`` pings on every checkout: a round trip that, on the booking path,
    cost more than the query it guarded. A connection back from work moments ago
    has just proven itself; one idle for ``IDLE_PING_SECONDS`` may have been closed by
    a server restart or a proxy and is pinged first, and replaced (the pool retries
    the checkout) when the ping finds it gone.
    """

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _stamp(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(
        dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"idle pooled connection is gone: {exc}") from exc


def _configure_sqlite(engine: Engine) -> None:
    """Turn on foreign keys and WAL, and let SQLAlchemy own BEGIN.

    pysqlite's own transaction handling defers BEGIN and commits around DDL; with it
    off, migrations and the immediate transactions the SQL breaker store needs are
    real transactions (the recipe from SQLAlchemy's SQLite dialect docs).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = str(connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED"))
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")


def outside_transaction(connection: Connection) -> Connection:
    """Set ``connection`` (not in a transaction) to run statements without one; returns it.

    For a lone read, which sees one snapshot either way: on PostgreSQL it runs in
    autocommit, without the BEGIN and ROLLBACK round trips, until the connection goes
    back to the pool. SQLite keeps its transactions: the pool's reset of an AUTOCOMMIT
    level would hand BEGIN back to pysqlite (see ``_configure_sqlite``).
    """
    if connection.dialect.name == "sqlite":
        return connection
    return connection.execution_options(isolation_level="AUTOCOMMIT")


def check_connection(engine: Engine) -> None:
    """Raise ``DatabaseUnavailableError`` (with the masked URL) if the database does not answer."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "no answer"
        url = mask_url(engine.url.render_as_string(hide_password=False))
        raise DatabaseUnavailableError(f"database unreachable at {url}: {reason}") from None
