"""Engine settings the rest of the system relies on."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from bookingguard.db import engine as engine_module
from bookingguard.db.async_engine import make_async_engine
from bookingguard.db.engine import (
    CONNECT_TIMEOUT_SECONDS,
    SQLITE_BEGIN_OPTION,
    make_engine,
    outside_transaction,
)
from bookingguard.db.models import Customer
from bookingguard.db.monitor_queries import tune_monitor_transaction
from bookingguard.db.uow import UnitOfWork
from tests.conftest import TestDatabase


def test_sqlite_uses_foreign_keys_and_wal(sqlite_database: TestDatabase) -> None:
    """SQLite connections enforce foreign keys and the file is in WAL mode."""
    with sqlite_database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


def test_foreign_keys_are_enforced(database: TestDatabase) -> None:
    """A review item for a call that does not exist is rejected on both dialects."""
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO manual_review_queue (call_id, reason, priority, status) "
                "VALUES (424242, 'x', 1, 'pending')"
            )
        )


def test_sqlite_immediate_transactions(sqlite_database: TestDatabase) -> None:
    """The sqlite_begin option opens BEGIN IMMEDIATE: a second writer cannot start meanwhile."""
    engine = sqlite_database.engine
    first = engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    second = engine.connect()
    second.connection.driver_connection.execute("PRAGMA busy_timeout = 50")  # type: ignore[union-attr]
    try:
        first.begin()
        first.execute(text("SELECT 1"))
        with pytest.raises(Exception, match="locked"):
            second.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        first.rollback()
        first.close()
        second.close()


def test_a_unit_of_work_that_reads_then_writes_survives_a_concurrent_writer(
    database: TestDatabase,
) -> None:
    """Another writer committing between our read and our write neither fails us nor is lost.

    On SQLite a deferred transaction would fail its write at once ("database is locked")
    because its snapshot went stale; sessions open with BEGIN IMMEDIATE, so the other
    writer waits for our commit instead. PostgreSQL lets the other writer through.
    """
    other_done = threading.Event()

    def other_writer() -> None:
        with database.engine.begin() as connection:
            connection.execute(text("INSERT INTO customers (name) VALUES ('other')"))
        other_done.set()

    with UnitOfWork(database.sessions) as uow:
        assert uow.session.scalar(select(func.count()).select_from(Customer)) == 0
        writer = threading.Thread(target=other_writer)
        writer.start()
        other_done.wait(timeout=1)
        uow.session.add(Customer(name="ours"))
        uow.commit()
    writer.join(timeout=30)
    assert other_done.is_set()
    with database.engine.connect() as connection:
        names = connection.scalars(text("SELECT name FROM customers ORDER BY name")).all()
    assert names == ["other", "ours"]


def test_a_read_outside_a_transaction_leaves_the_pooled_connection_transactional(
    database: TestDatabase,
) -> None:
    """The next user of a connection that read outside a transaction can still roll back."""
    engine = database.engine
    with engine.connect() as connection:
        counted = outside_transaction(connection).scalar(select(func.count(Customer.id)))
        reused = connection.connection.dbapi_connection
    assert counted == 0

    def write_then_fail() -> None:
        with engine.begin() as connection:
            assert connection.connection.dbapi_connection is reused
            connection.execute(text("INSERT INTO customers (name) VALUES ('undone')"))
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError, match="undo"):
        write_then_fail()
    with engine.connect() as connection:
        assert connection.scalar(select(func.count(Customer.id))) == 0


def _terminate_backend(database: TestDatabase, pid: int) -> None:
    admin = make_engine(database.url, pool=False)
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def _backend_pid(database: TestDatabase) -> int:
    with database.engine.connect() as connection:
        pid: int = connection.scalar(text("SELECT pg_backend_pid()"))
    return pid


def test_an_idle_pooled_connection_closed_by_the_server_is_replaced_on_checkout(
    postgres_database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection idle past the ping threshold is pinged, found dead and replaced."""
    pid = _backend_pid(postgres_database)
    _terminate_backend(postgres_database, pid)
    monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
    replacement = _backend_pid(postgres_database)
    assert replacement != pid


def test_a_connection_back_from_work_moments_ago_is_handed_out_unpinged(
    postgres_database: TestDatabase,
) -> None:
    """Within the threshold there is no ping: a backend killed meanwhile shows as a disconnect.

    This is the round trip the threshold saves on busy paths; the statement's own error
    invalidates the connection, and the next checkout gets a live one.
    """
    pid = _backend_pid(postgres_database)
    _terminate_backend(postgres_database, pid)
    with pytest.raises(DBAPIError) as failure:
        _backend_pid(postgres_database)
    assert failure.value.connection_invalidated
    assert _backend_pid(postgres_database) != pid


def test_monitor_plan_settings_last_for_the_transaction(postgres_database: TestDatabase) -> None:
    """A monitor run's statements plan serially and per value; the next transaction does not."""
    settings = text(
        "SELECT current_setting('max_parallel_workers_per_gather'),"
        " current_setting('plan_cache_mode')"
    )
    with postgres_database.sessions() as session:
        before = tuple(session.execute(settings).one())
        session.commit()
        tune_monitor_transaction(session)
        assert tuple(session.execute(settings).one()) == ("0", "force_custom_plan")
        session.commit()
        assert tuple(session.execute(settings).one()) == before != ("0", "force_custom_plan")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word, as a hung server does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    yield int(listener.getsockname()[1])
    stop.set()
    acceptor.join()
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.mark.parametrize(
    ("query", "limit"), [("", CONNECT_TIMEOUT_SECONDS), ("?connect_timeout=2", 2)]
)
def test_a_postgresql_server_that_never_answers_fails_the_connection_in_time(
    silent_server: int, query: str, limit: int
) -> None:
    """A connection attempt gives up after the default timeout, or the one the URL sets."""
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent_server}/x{query}")
    errors: list[Exception] = []

    def connect() -> None:
        try:
            with engine.connect():
                pass
        except Exception as exc:
            errors.append(exc)

    attempt = threading.Thread(target=connect, daemon=True)
    started = time.monotonic()
    attempt.start()
    attempt.join(limit + 3)
    elapsed = time.monotonic() - started
    engine.dispose()
    assert not attempt.is_alive(), "the connection attempt is still waiting"
    assert isinstance(errors[0], OperationalError)
    assert "timeout" in str(errors[0])
    assert elapsed >= limit - 0.5


async def _async_backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        pid = await connection.scalar(select(func.pg_backend_pid()))
    assert pid is not None
    return int(pid)


async def test_an_idle_async_connection_closed_by_the_server_is_replaced(
    postgres_database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The booking path's async engine pings a connection idle past the threshold, as the
    sync engine does, and hands out a live one instead of the dead one."""
    engine = make_async_engine(postgres_database.engine)
    try:
        pid = await _async_backend_pid(engine)
        _terminate_backend(postgres_database, pid)
        monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
        assert await _async_backend_pid(engine) != pid
    finally:
        await engine.dispose()


async def test_async_errors_are_sqlalchemy_errors_and_a_broken_connection_is_dropped(
    postgres_database: TestDatabase,
) -> None:
    """A backend killed moments after use fails the next statement with SQLAlchemy's
    OperationalError (no ping within the threshold); the pool then drops that connection.
    A unique violation is SQLAlchemy's IntegrityError, as the booking path expects."""
    engine = make_async_engine(postgres_database.engine)
    try:
        pid = await _async_backend_pid(engine)
        _terminate_backend(postgres_database, pid)
        with pytest.raises(OperationalError):
            await _async_backend_pid(engine)
        assert await _async_backend_pid(engine) != pid
        insert = text("INSERT INTO customers (name) VALUES ('a') RETURNING id")
        async with engine.connect() as connection:
            created = await connection.scalar(insert)
            assert created is not None
            duplicate = text("INSERT INTO customers (id, name) VALUES (:id, 'b')")
            with pytest.raises(IntegrityError):
                await connection.execute(duplicate, {"id": created})
    finally:
        await engine.dispose()


async def test_the_async_engine_gives_up_on_a_server_that_never_answers(silent_server: int) -> None:
    """The booking path's async connections fail within the URL's connect_timeout too."""
    engine = make_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{silent_server}/x?connect_timeout=2"
    )
    async_engine = make_async_engine(engine)
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError):
            await asyncio.wait_for(_async_backend_pid(async_engine), timeout=10)
    finally:
        await async_engine.dispose()
        engine.dispose()
    assert 1.5 <= time.monotonic() - started <= 6


async def test_the_async_engine_gives_up_on_a_silent_server_by_default(
    silent_server: int,
) -> None:
    """With no connect_timeout in the URL, the async engine waits the sync engine's default."""
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent_server}/x")
    async_engine = make_async_engine(engine)
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError):
            await asyncio.wait_for(
                _async_backend_pid(async_engine), timeout=CONNECT_TIMEOUT_SECONDS + 5
            )
    finally:
        await async_engine.dispose()
        engine.dispose()
    assert (
        CONNECT_TIMEOUT_SECONDS - 0.5 <= time.monotonic() - started <= CONNECT_TIMEOUT_SECONDS + 1
    )
