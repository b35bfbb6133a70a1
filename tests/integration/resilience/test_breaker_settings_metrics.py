"""Building the breaker from settings, and what it reports to Prometheus."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from bookingguard.bootstrap import build_circuit_breaker, build_redis
from bookingguard.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    FallbackStore,
    MemoryStore,
    RedisStore,
    SqlStore,
    store_from_settings,
)
from bookingguard.resilience.metrics import MAX_CIRCUIT_LABELS, OTHER_CIRCUITS, STATE_VALUES
from bookingguard.settings import Settings
from tests.conftest import TestDatabase

from .conftest import delete_keys

KEY = "appointment_booking:event_type:21"


class Unavailable(Exception):
    status_code = 503


class NotFound(Exception):
    status_code = 404


async def fail() -> None:
    raise Unavailable


async def missing() -> None:
    raise NotFound


async def ok() -> str:
    return "ok"


def test_chain_without_redis_is_sql_then_memory(database: TestDatabase) -> None:
    """The embedded default: the SQL store leads, memory backs it."""
    chain = store_from_settings(Settings(database_url=database.url), engine=database.engine)
    assert [type(s) for s in chain.stores] == [SqlStore, MemoryStore]


async def test_from_settings_uses_redis_first(
    redis_url: str, redis_prefix: str, database: TestDatabase
) -> None:
    """With redis_url set the chain is Redis, SQL, memory, and calls run on Redis."""
    settings = Settings.model_validate(
        {
            "database_url": database.url,
            "redis_url": redis_url,
            "circuit_breaker": {"redis_key_prefix": redis_prefix, "failure_threshold": 2},
        }
    )
    clients = build_redis(settings)
    assert clients is not None
    breaker = build_circuit_breaker(
        settings, database.engine, registry=CollectorRegistry(), redis_client=clients.asyncio
    )
    try:
        assert isinstance(breaker.store, FallbackStore)
        assert [type(s) for s in breaker.store.stores] == [RedisStore, SqlStore, MemoryStore]
        for _ in range(2):
            with pytest.raises(Unavailable):
                await breaker.call(KEY, fail)
        stats = await breaker.statistics(KEY)
        assert (stats.state, stats.store) == ("open", "redis")
        await breaker.drain()
        audited = await SqlStore(database.engine).statistics(KEY)
        assert (audited.state, audited.failure_count) == ("open", 2)
    finally:
        await breaker.aclose()
        await clients.aclose()
        delete_keys(redis_url, redis_prefix)


async def test_prometheus_metrics_follow_calls_and_transitions() -> None:
    """State gauge, transitions, calls by outcome and rejections, labelled by circuit only."""
    registry = CollectorRegistry()
    breaker = CircuitBreaker(MemoryStore(), registry=registry)
    await breaker.call(KEY, ok)
    with pytest.raises(NotFound):
        await breaker.call(KEY, missing)
    for _ in range(3):
        with pytest.raises(Unavailable):
            await breaker.call(KEY, fail)
    with pytest.raises(CircuitOpenError):
        await breaker.call(KEY, ok)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    calls = "bookingguard_circuit_calls_total"
    assert value(calls, circuit=KEY, outcome="success") == 1
    assert value(calls, circuit=KEY, outcome="ignored") == 1
    assert value(calls, circuit=KEY, outcome="failure") == 3
    assert value("bookingguard_circuit_state", circuit=KEY) == 2
    assert (
        value(
            "bookingguard_circuit_transitions_total",
            circuit=KEY,
            from_state="closed",
            to_state="open",
        )
        == 1
    )
    assert value("bookingguard_circuit_not_permitted_total", circuit=KEY) == 1


async def test_two_breakers_share_one_registrys_metrics() -> None:
    """A second breaker on the same registry adds to the same collectors instead of failing."""
    registry = CollectorRegistry()
    for breaker in (CircuitBreaker(MemoryStore(), registry=registry) for _ in range(2)):
        await breaker.call(KEY, ok)
    sample = registry.get_sample_value(
        "bookingguard_circuit_calls_total", {"circuit": KEY, "outcome": "success"}
    )
    assert sample == 2


async def test_circuit_labels_are_capped_with_an_other_label() -> None:
    """Made-up event type ids cannot grow the series: past the cap, circuits are counted,
    refused and shown (the worst state) under ``other``."""
    registry = CollectorRegistry()
    breaker = CircuitBreaker(MemoryStore(), registry=registry)
    circuits = [f"appointment_booking:event_type:{i}" for i in range(MAX_CIRCUIT_LABELS + 50)]
    for circuit in circuits:
        await breaker.call(circuit, ok)
    for _ in range(3):
        with pytest.raises(Unavailable):
            await breaker.call(circuits[-1], fail)
    with pytest.raises(CircuitOpenError):
        await breaker.call(circuits[-1], ok)

    labels = {
        sample.labels["circuit"]
        for family in registry.collect()
        if family.name.startswith("bookingguard_circuit")
        for sample in family.samples
        if "circuit" in sample.labels
    }
    assert labels == {*circuits[:MAX_CIRCUIT_LABELS], OTHER_CIRCUITS}

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    calls = "bookingguard_circuit_calls_total"
    assert value(calls, circuit=OTHER_CIRCUITS, outcome="success") == 50
    assert value(calls, circuit=OTHER_CIRCUITS, outcome="failure") == 3
    assert value(calls, circuit=circuits[0], outcome="success") == 1
    assert value("bookingguard_circuit_not_permitted_total", circuit=OTHER_CIRCUITS) == 1
    assert value("bookingguard_circuit_state", circuit=OTHER_CIRCUITS) == STATE_VALUES["open"]
