"""Transitions are audited to the database idempotently; a closed-state success writes nothing."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError, OperationalError

from bookingguard.bootstrap import replay_spool
from bookingguard.db.models import CircuitBreakerState, CircuitBreakerTransition
from bookingguard.db.spool import Spool
from bookingguard.resilience import BreakerPolicy, CircuitBreaker, MemoryStore, SqlStore
from bookingguard.resilience.audit import TransitionAudit, decode
from bookingguard.resilience.machine import Transition
from bookingguard.resilience.retry import RetryPolicy
from bookingguard.resilience.stores.sql import write_transitions
from bookingguard.settings import Settings
from tests.conftest import TestDatabase

KEY = "appointment_booking:event_type:3"
POLICY = BreakerPolicy(cooldown_seconds=30)


class Unavailable(Exception):
    status_code = 503


async def fail() -> None:
    raise Unavailable


async def ok() -> str:
    return "ok"


async def test_memory_store_transitions_are_audited(database: TestDatabase) -> None:
    """Opening and forcing a circuit on the memory store lands in both audit tables,
    named as this process's memory's decisions."""
    audit = TransitionAudit(database.engine)
    memory = MemoryStore()
    breaker = CircuitBreaker(memory, policy=POLICY, registry=CollectorRegistry(), audit=audit)
    for _ in range(3):
        with pytest.raises(Unavailable):
            await breaker.call(KEY, fail)
    await breaker.reset(KEY)
    await breaker.drain()
    with database.sessions() as session:
        history = session.execute(
            select(
                CircuitBreakerTransition.from_state,
                CircuitBreakerTransition.to_state,
                CircuitBreakerTransition.reason,
                CircuitBreakerTransition.version,
                CircuitBreakerTransition.decided_by,
            ).order_by(CircuitBreakerTransition.version)
        ).all()
        state = session.execute(select(CircuitBreakerState)).scalar_one()
    assert [tuple(row)[:3] for row in history] == [
        ("closed", "open", "failure_threshold"),
        ("open", "closed", "reset"),
    ]
    assert memory.decider == f"memory:{socket.gethostname()}:{os.getpid()}"
    assert {row.decided_by for row in history} == {memory.decider}
    assert history[0].version < history[1].version
    assert (state.circuit_key, state.state, state.version) == (KEY, "closed", history[1].version)


async def test_audit_writes_are_idempotent(database: TestDatabase) -> None:
    """Writing the same transitions twice leaves one history row per version."""
    store = MemoryStore()
    transitions = await store.force_open(KEY)
    write_transitions(database.engine, transitions)
    write_transitions(database.engine, transitions)
    with database.sessions() as session:
        rows = session.execute(select(CircuitBreakerTransition)).scalars().all()
        state = session.execute(select(CircuitBreakerState)).scalar_one()
    assert [(r.to_state, r.version) for r in rows] == [("open", transitions[0].version)]
    assert (state.state, state.forced_open) == ("open", True)


async def test_sql_store_writes_transitions_in_its_own_transaction(
    database: TestDatabase,
) -> None:
    """On the SQL store the history is written with the state change, once."""
    breaker = CircuitBreaker(
        SqlStore(database.engine),
        policy=POLICY,
        registry=CollectorRegistry(),
        audit=TransitionAudit(database.engine),
    )
    for _ in range(3):
        with pytest.raises(Unavailable):
            await breaker.call(KEY, fail)
    await breaker.drain()
    with database.sessions() as session:
        rows = session.execute(select(CircuitBreakerTransition)).scalars().all()
    assert [(r.from_state, r.to_state, r.decided_by) for r in rows] == [("closed", "open", "sql")]


async def test_successful_closed_calls_write_nothing(database: TestDatabase) -> None:
    """Successes in closed state with nothing to reset only read: no write, no write lock."""
    breaker = CircuitBreaker(
        SqlStore(database.engine),
        policy=POLICY,
        registry=CollectorRegistry(),
        audit=TransitionAudit(database.engine),
    )
    with pytest.raises(Unavailable):
        await breaker.call(KEY, fail)
    await breaker.call(KEY, ok)  # resets the count: one write
    statements: list[str] = []

    def remember(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()[:2]).upper())

    event.listen(database.engine, "before_cursor_execute", remember)
    try:
        for _ in range(20):
            assert await breaker.call(KEY, ok) == "ok"
        await breaker.drain()
    finally:
        event.remove(database.engine, "before_cursor_execute", remember)
    writes = ("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE")
    assert any(s.startswith("SELECT") for s in statements)
    assert [s for s in statements if s.startswith(writes)] == []


async def test_audit_waits_out_a_database_blip(database: TestDatabase) -> None:
    """The database drops the connections of the first write and of the retry's first two
    attempts: the transition is written on the third, after the waits the policy gives,
    and the next one after it; no gap."""
    refused: list[str] = []

    def drop_connection(conn: object, cursor: object, statement: str, *args: object) -> None:
        if len(refused) < 3 and "circuit_breaker" in statement:
            refused.append(statement)
            raise OperationalError(statement, {}, ConnectionError("server closed the connection"))

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    audit = TransitionAudit(
        database.engine, policy=RetryPolicy(attempts=3, base_delay=0.5, jitter=0), sleep=sleep
    )
    breaker = CircuitBreaker(
        MemoryStore(), policy=POLICY, registry=CollectorRegistry(), audit=audit
    )
    event.listen(database.engine, "before_cursor_execute", drop_connection)
    try:
        for _ in range(3):
            with pytest.raises(Unavailable):
                await breaker.call(KEY, fail)
        await breaker.drain()
        await breaker.reset(KEY)
        await breaker.drain()
    finally:
        event.remove(database.engine, "before_cursor_execute", drop_connection)
    with database.sessions() as session:
        history = session.execute(
            select(CircuitBreakerTransition.to_state, CircuitBreakerTransition.version).order_by(
                CircuitBreakerTransition.version
            )
        ).all()
    assert len(refused) == 3
    assert waits == [0.5, 1.0]
    assert [row[0] for row in history] == ["open", "closed"]


def _history(database: TestDatabase) -> list[tuple[str, str, int]]:
    with database.sessions() as session:
        rows = session.execute(
            select(
                CircuitBreakerTransition.from_state,
                CircuitBreakerTransition.to_state,
                CircuitBreakerTransition.version,
            ).order_by(CircuitBreakerTransition.version)
        ).all()
    return [(row[0], row[1], row[2]) for row in rows]


async def test_transitions_the_database_cannot_take_wait_in_the_spool(
    database: TestDatabase, tmp_path: Path
) -> None:
    """The database refuses every audit write until the process is gone (its retries
    spent, as a process killed while they wait): the transitions are in the spool, and
    ``bookingguard check``'s replay writes them into the history once, in order."""

    def down(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "circuit_breaker" in statement:
            raise OperationalError(statement, {}, ConnectionError("connection refused"))

    spool = Spool(tmp_path / "spool.db")
    audit = TransitionAudit(
        database.engine,
        spool=spool,
        policy=RetryPolicy(attempts=2, base_delay=0.5, jitter=0),
        sleep=_no_wait,
    )
    breaker = CircuitBreaker(
        MemoryStore(), policy=POLICY, registry=CollectorRegistry(), audit=audit
    )
    event.listen(database.engine, "before_cursor_execute", down)
    try:
        for _ in range(3):
            with pytest.raises(Unavailable):
                await breaker.call(KEY, fail)
        await breaker.reset(KEY)
        await breaker.drain()
    finally:
        event.remove(database.engine, "before_cursor_execute", down)
    assert _history(database) == []
    spooled = [decode(t) for t in spool.pending_transitions()]
    assert [(t.from_state, t.to_state) for t in spooled] == [("closed", "open"), ("open", "closed")]

    settings = Settings(database_url=database.url, spool={"path": str(spool.path)})
    replayed = await replay_spool(settings, database.engine)
    assert (replayed.replayed, replayed.remaining, replayed.error) == (2, 0, None)
    assert _history(database) == [
        ("closed", "open", spooled[0].version),
        ("open", "closed", spooled[1].version),
    ]
    with database.sessions() as session:
        state = session.execute(select(CircuitBreakerState)).scalar_one()
    assert (state.state, state.version) == ("closed", spooled[1].version)
    assert (await replay_spool(settings, database.engine)).replayed == 0
    assert len(_history(database)) == 2


async def test_a_spooled_transition_written_by_the_retry_leaves_the_spool(
    database: TestDatabase, tmp_path: Path
) -> None:
    """A blip: the first write is refused, so the transition is spooled, and the retry
    writes it; the spool holds nothing afterwards and a replay writes nothing twice."""
    refused: list[str] = []

    def blip(conn: object, cursor: object, statement: str, *args: object) -> None:
        if not refused and "circuit_breaker" in statement:
            refused.append(statement)
            raise OperationalError(statement, {}, ConnectionError("server closed the connection"))

    spool = Spool(tmp_path / "spool.db")
    audit = TransitionAudit(database.engine, spool=spool, sleep=_no_wait)
    event.listen(database.engine, "before_cursor_execute", blip)
    try:
        audit.submit(await MemoryStore().force_open(KEY))
        await audit.drain()
    finally:
        event.remove(database.engine, "before_cursor_execute", blip)
    assert len(refused) == 1
    assert spool.path.exists()
    assert spool.backlog() == 0
    assert [row[:2] for row in _history(database)] == [("closed", "open")]
    assert await audit.replay() == 0


async def _no_wait(seconds: float) -> None:
    return None


async def test_audit_gives_up_on_a_write_the_database_rejects(database: TestDatabase) -> None:
    """A write the database refuses for its content is not retried: logged once, dropped."""
    attempts: list[str] = []

    def reject(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "circuit_breaker" in statement:
            attempts.append(statement)
            raise IntegrityError(statement, {}, ValueError("rejected"))

    audit = TransitionAudit(database.engine, sleep=_never_sleep)
    event.listen(database.engine, "before_cursor_execute", reject)
    try:
        audit.submit(await MemoryStore().force_open(KEY))
        await audit.drain()
    finally:
        event.remove(database.engine, "before_cursor_execute", reject)
    # write_transitions tries twice itself when a row appears meanwhile; never more.
    assert len(attempts) <= 2


async def _never_sleep(seconds: float) -> None:
    raise AssertionError(f"a rejected write waited {seconds} s to be retried")


async def test_stores_taking_turns_never_repeat_a_version(database: TestDatabase) -> None:
    """The SQL store opens and closes the circuit; then a memory store (a process whose
    Redis and database were both out) opens it again: its transition is audited beside
    the others, later, not dropped as a repeat of a version the history holds."""
    sql = CircuitBreaker(SqlStore(database.engine), policy=POLICY, registry=CollectorRegistry())
    for _ in range(3):
        with pytest.raises(Unavailable):
            await sql.call(KEY, fail)
    await sql.reset(KEY)
    memory = CircuitBreaker(
        MemoryStore(),
        policy=POLICY,
        registry=CollectorRegistry(),
        audit=TransitionAudit(database.engine),
    )
    for _ in range(3):
        with pytest.raises(Unavailable):
            await memory.call(KEY, fail)
    await memory.drain()
    with database.sessions() as session:
        history = session.execute(
            select(CircuitBreakerTransition.to_state, CircuitBreakerTransition.version).order_by(
                CircuitBreakerTransition.id
            )
        ).all()
    assert [row[0] for row in history] == ["open", "closed", "open"]
    assert [row[1] for row in history] == sorted({row[1] for row in history})


class _ReplyInFlight(MemoryStore):
    """A store that has decided a result (as Redis has once its script ran) while its
    reply is still on the way back, until ``arrive`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.decided = asyncio.Event()
        self.arrive = asyncio.Event()

    async def record(self, *args: Any, **kwargs: Any) -> list[Transition]:
        transitions = await super().record(*args, **kwargs)
        self.decided.set()
        await self.arrive.wait()
        return transitions


async def test_a_caller_cancelled_while_its_result_is_recorded_loses_no_transition(
    database: TestDatabase,
) -> None:
    """The call fails and the store opens the circuit, but the caller is cancelled (its
    client hung up) before the store's reply arrives: the transition is still published
    and audited once the reply comes."""
    store = _ReplyInFlight()
    breaker = CircuitBreaker(
        store,
        policy=BreakerPolicy(cooldown_seconds=30, failure_threshold=1),
        registry=CollectorRegistry(),
        audit=TransitionAudit(database.engine),
    )
    caller = asyncio.create_task(breaker.call(KEY, fail))
    await store.decided.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    store.arrive.set()
    await breaker.drain()
    with database.sessions() as session:
        history = session.execute(
            select(CircuitBreakerTransition.from_state, CircuitBreakerTransition.to_state)
        ).all()
    assert [tuple(row) for row in history] == [("closed", "open")]
