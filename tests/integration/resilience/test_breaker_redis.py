"""Redis layout: one hash per circuit, keys in one cluster slot, only the probe lease expires."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.crc import key_slot
from sqlalchemy import select

from bookingguard.bootstrap import build_async_redis
from bookingguard.db.models import CircuitBreakerTransition
from bookingguard.resilience import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitOpenError,
    FallbackStore,
    MemoryStore,
    RedisStore,
    SqlStore,
)
from bookingguard.resilience.audit import TransitionAudit
from bookingguard.resilience.machine import Transition
from bookingguard.resilience.outcome import Outcome
from bookingguard.resilience.stores.redis import OUTBOX_SCAN_SECONDS
from tests.conftest import TestDatabase
from tests.support.cli import run_cli

from .conftest import age_redis_circuits, delete_keys

KEY = "appointment_booking:event_type:77"


async def test_only_the_probe_lease_has_a_ttl(redis_url: str, redis_prefix: str) -> None:
    """The circuit's hash never expires; the lease does, within its TTL; both share a slot."""
    policy = BreakerPolicy(cooldown_seconds=30, timeout_seconds=1.0)
    breaker = CircuitBreaker(
        RedisStore(build_async_redis(redis_url, timeout_seconds=0.1), key_prefix=redis_prefix),
        policy=policy,
        registry=CollectorRegistry(),
    )
    client = redis.Redis.from_url(redis_url)
    state_key, probe_key = f"{redis_prefix}{{{KEY}}}:state", f"{redis_prefix}{{{KEY}}}:probe"
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_probe() -> None:
        entered.set()
        await release.wait()

    try:
        await breaker.force_open(KEY)
        assert client.ttl(state_key) == -1
        await breaker.reset(KEY)
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await breaker.call(KEY, _fail)
        age_redis_circuits(redis_url, redis_prefix, policy.cooldown_seconds)
        probe = asyncio.create_task(breaker.call(KEY, slow_probe))
        await entered.wait()
        assert 0 < client.pttl(probe_key) <= policy.lease_seconds * 1000
        assert client.ttl(state_key) == -1
        assert key_slot(state_key.encode()) == key_slot(probe_key.encode())
        with pytest.raises(CircuitOpenError) as rejected:
            await breaker.call(KEY, slow_probe)
        assert rejected.value.state == "half_open"
        release.set()
        await probe
        assert client.exists(probe_key) == 0
    finally:
        client.close()
        await breaker.aclose()
        delete_keys(redis_url, redis_prefix)


async def _fail() -> None:
    raise ConnectionError("dependency refused")


class Unavailable(Exception):
    status_code = 503


async def fail() -> None:
    raise Unavailable


async def test_a_redis_restarted_empty_leaves_no_gap_in_the_history(
    redis_url: str, redis_prefix: str, database: TestDatabase
) -> None:
    """The circuit opens, Redis loses everything (a restart without persistence), the circuit
    opens again: both openings are in the database's history, in order, none dropped as a
    repeat of an earlier version."""
    breaker = CircuitBreaker(
        RedisStore(build_async_redis(redis_url, timeout_seconds=1.0), key_prefix=redis_prefix),
        policy=BreakerPolicy(cooldown_seconds=30, failure_threshold=2),
        registry=CollectorRegistry(),
        audit=TransitionAudit(database.engine),
    )
    try:
        for _ in range(2):
            for _ in range(2):
                with pytest.raises(Unavailable):
                    await breaker.call(KEY, fail)
            with pytest.raises(CircuitOpenError):
                await breaker.call(KEY, fail)
            await breaker.drain()
            delete_keys(redis_url, redis_prefix)  # Redis restarted empty
    finally:
        await breaker.aclose()
    with database.sessions() as session:
        history = session.execute(
            select(CircuitBreakerTransition.to_state, CircuitBreakerTransition.version).order_by(
                CircuitBreakerTransition.id
            )
        ).all()
    assert [row[0] for row in history] == ["open", "open"]
    assert history[0][1] < history[1][1]


async def _open_and_close(store: RedisStore) -> list[Transition]:
    """Redis opens KEY's circuit (one failure) and resets it: two transitions, in its outbox."""
    policy = BreakerPolicy(cooldown_seconds=30, failure_threshold=1)
    admission = await store.acquire(KEY, policy)
    decided = await store.record(KEY, policy, admission, Outcome.FAILURE, slow=False)
    return decided + await store.reset(KEY)


def _history(database: TestDatabase) -> list[tuple[str, str, int, str]]:
    """The history's transitions, oldest version first."""
    with database.sessions() as session:
        rows = session.execute(
            select(
                CircuitBreakerTransition.from_state,
                CircuitBreakerTransition.to_state,
                CircuitBreakerTransition.version,
                CircuitBreakerTransition.decided_by,
            ).order_by(CircuitBreakerTransition.version)
        ).all()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


async def test_transitions_whose_reply_was_lost_reach_the_history_through_the_outbox(
    redis_url: str, redis_prefix: str, database: TestDatabase
) -> None:
    """Redis opens the circuit and resets it, but no reply reaches a breaker (the process
    timed out waiting for it, or died): the audit's replay drains the circuit's outbox
    into the history, once, in order, and leaves the outbox empty."""
    client = build_async_redis(redis_url, timeout_seconds=1.0)
    store = RedisStore(client, key_prefix=redis_prefix)
    outbox = f"{redis_prefix}{{{KEY}}}:outbox"
    try:
        decided = await _open_and_close(store)
        assert await client.llen(outbox) == 2
        audit = TransitionAudit(database.engine, outboxes=[store])
        await audit.replay()
        assert await client.llen(outbox) == 0
        await audit.replay()
    finally:
        await store.aclose()
        await client.aclose()
        delete_keys(redis_url, redis_prefix)
    assert _history(database) == [
        ("closed", "open", decided[0].version, "redis"),
        ("open", "closed", decided[1].version, "redis"),
    ]


async def test_a_drain_walks_the_keyspace_for_other_outboxes_only_now_and_then(
    redis_url: str, redis_prefix: str, database: TestDatabase
) -> None:
    """Every drain empties the outboxes of the circuits its store used. Another process's
    (a replica that died) wait for the next walk of the keyspace: at the first drain and
    every ``OUTBOX_SCAN_SECONDS`` after, not at every drain."""
    client = build_async_redis(redis_url, timeout_seconds=1.0)
    clock = [0.0]
    ours = RedisStore(client, key_prefix=redis_prefix, monotonic=lambda: clock[0])
    theirs = RedisStore(client, key_prefix=redis_prefix)
    policy = BreakerPolicy(cooldown_seconds=30, failure_threshold=1)
    mine, other = f"{KEY}:mine", f"{KEY}:other"
    audit = TransitionAudit(database.engine, outboxes=[ours])

    async def open_circuit(store: RedisStore, key: str) -> None:
        admission = await store.acquire(key, policy)
        await store.record(key, policy, admission, Outcome.FAILURE, slow=False)

    async def waiting(key: str) -> int:
        return int(await client.llen(f"{redis_prefix}{{{key}}}:outbox"))

    try:
        await audit.replay()
        await open_circuit(ours, mine)
        await open_circuit(theirs, other)
        clock[0] += OUTBOX_SCAN_SECONDS - 1
        await audit.replay()
        between = (await waiting(mine), await waiting(other))
        clock[0] += 1
        await audit.replay()
        after = (await waiting(mine), await waiting(other))
    finally:
        await ours.aclose()
        await theirs.aclose()
        await client.aclose()
        delete_keys(redis_url, redis_prefix)
    assert between == (0, 1)
    assert after == (0, 0)
    with database.sessions() as session:
        opened = session.scalars(
            select(CircuitBreakerTransition.circuit_key).where(
                CircuitBreakerTransition.to_state == "open"
            )
        ).all()
    assert sorted(opened) == sorted([mine, other])


async def test_check_drains_the_outboxes_into_the_history_before_it_checks(
    redis_url: str, redis_prefix: str, database: TestDatabase, tmp_path: Path
) -> None:
    """Transitions whose replies no process received wait in Redis's outbox while no
    ``serve`` runs: ``bookingguard check`` writes them into the history too."""
    client = build_async_redis(redis_url, timeout_seconds=1.0)
    store = RedisStore(client, key_prefix=redis_prefix)
    outbox = f"{redis_prefix}{{{KEY}}}:outbox"
    try:
        decided = await _open_and_close(store)
        result = run_cli(
            "check",
            "--json",
            "--no-notify",
            env={
                "BOOKINGGUARD_DATABASE_URL": database.url,
                "BOOKINGGUARD_REDIS_URL": redis_url,
                "BOOKINGGUARD_CIRCUIT_BREAKER__REDIS_KEY_PREFIX": redis_prefix,
                "BOOKINGGUARD_SPOOL__PATH": str(tmp_path / "spool.db"),
            },
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert await client.llen(outbox) == 0
    finally:
        await store.aclose()
        await client.aclose()
        delete_keys(redis_url, redis_prefix)
    assert _history(database) == [
        ("closed", "open", decided[0].version, "redis"),
        ("open", "closed", decided[1].version, "redis"),
    ]


async def test_a_redis_restarted_between_calls_takes_the_open_circuit_back(
    redis_url: str, redis_prefix: str, database: TestDatabase
) -> None:
    """The circuit opened on Redis (the audit kept SQL's state row in step); Redis then
    restarts empty, its keys and scripts gone, while this process makes no call. The next
    call meets NOSCRIPT: the chain gives Redis the circuit still open on SQL first, so the
    call is refused, not sent to the failing dependency."""
    client = build_async_redis(redis_url, timeout_seconds=1.0)
    redis_store = RedisStore(client, key_prefix=redis_prefix)
    breaker = CircuitBreaker(
        FallbackStore([redis_store, SqlStore(database.engine), MemoryStore()]),
        policy=BreakerPolicy(cooldown_seconds=30, failure_threshold=2),
        registry=CollectorRegistry(),
        audit=TransitionAudit(database.engine),
    )
    calls: list[str] = []

    async def failing() -> None:
        calls.append("called")
        raise Unavailable

    try:
        for _ in range(2):
            with pytest.raises(Unavailable):
                await breaker.call(KEY, failing)
        await breaker.drain()
        delete_keys(redis_url, redis_prefix)
        await client.script_flush()
        with pytest.raises(CircuitOpenError):
            await breaker.call(KEY, failing)
        assert calls == ["called", "called"]
        assert breaker.active_store == "redis"
        assert (await redis_store.statistics(KEY)).state == "open"
    finally:
        await breaker.aclose()
        await client.aclose()
        delete_keys(redis_url, redis_prefix)
