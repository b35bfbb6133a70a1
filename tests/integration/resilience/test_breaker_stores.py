"""One behaviour suite, run against every store: memory, Redis, SQL on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bookingguard.resilience import (
    BreakerPolicy,
    BreakerStore,
    CircuitBreaker,
    CircuitOpenError,
    MemoryStore,
    Outcome,
    machine,
)

from .conftest import FakeClock, Harness, StoreFactory

KEY = "appointment_booking:event_type:42"
COOLDOWN = 30.0
FAST = BreakerPolicy(cooldown_seconds=COOLDOWN, timeout_seconds=1.0)

MakeHarness = Callable[[BreakerPolicy], Harness]


class Unavailable(Exception):
    """The dependency's 503."""

    status_code = 503


class SlotTaken(Exception):
    """The dependency's 409: the caller's problem, not the dependency's."""

    status_code = 409


class Dependency:
    """Counts the calls that reach it.

    A successful call waits for ``gate`` if there is one, and takes ``duration``
    seconds on ``clock`` (the breaker's clock for call durations) if there is one.
    """

    def __init__(
        self,
        *,
        gate: asyncio.Event | None = None,
        clock: FakeClock | None = None,
        duration: float = 0.0,
    ) -> None:
        self.calls = 0
        self.gate = gate
        self.clock = clock
        self.duration = duration

    async def ok(self) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.clock is not None:
            self.clock.advance(self.duration)
        return "booked"

    async def fail(self) -> str:
        self.calls += 1
        raise Unavailable

    async def taken(self) -> str:
        self.calls += 1
        raise SlotTaken


async def fail_times(harness: Harness, dependency: Dependency, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Unavailable):
            await harness.breaker.call(KEY, dependency.fail)


async def open_circuit(harness: Harness, dependency: Dependency) -> None:
    await fail_times(harness, dependency, 3)
    assert (await harness.breaker.statistics(KEY)).state == "open"


async def test_opens_after_threshold_and_rejects_without_calling(make_harness: MakeHarness) -> None:
    """Three consecutive failures open the circuit; the next call is rejected with retry_after."""
    harness, dependency = make_harness(FAST), Dependency()
    await fail_times(harness, dependency, 2)
    assert (await harness.breaker.statistics(KEY)).state == "closed"
    await fail_times(harness, dependency, 1)
    with pytest.raises(CircuitOpenError) as rejected:
        await harness.breaker.call(KEY, dependency.ok)
    assert dependency.calls == 3
    assert 0 < rejected.value.retry_after <= COOLDOWN
    assert rejected.value.circuit_key == KEY
    stats = await harness.breaker.statistics(KEY)
    assert (stats.state, stats.failure_count, stats.not_permitted_count) == ("open", 3, 1)
    assert stats.opened_at is not None
    assert stats.open_until is not None
    assert stats.last_failure_at is not None
    assert harness.transitions() == [("closed", "open", "failure_threshold")]
    assert harness.breaker.active_store == harness.store.name


async def test_success_resets_the_failure_count(make_harness: MakeHarness) -> None:
    """A success in closed state resets the consecutive-failure count."""
    harness, dependency = make_harness(FAST), Dependency()
    await fail_times(harness, dependency, 2)
    assert await harness.breaker.call(KEY, dependency.ok) == "booked"
    await fail_times(harness, dependency, 2)
    stats = await harness.breaker.statistics(KEY)
    assert (stats.state, stats.failure_count) == ("closed", 2)


async def test_ignored_outcome_neither_counts_nor_resets(make_harness: MakeHarness) -> None:
    """A 4xx such as 409 is ignored: the count stays, and the next failure still opens."""
    harness, dependency = make_harness(FAST), Dependency()
    await fail_times(harness, dependency, 2)
    for _ in range(3):
        with pytest.raises(SlotTaken):
            await harness.breaker.call(KEY, dependency.taken)
    stats = await harness.breaker.statistics(KEY)
    assert (stats.state, stats.failure_count) == ("closed", 2)
    await fail_times(harness, dependency, 1)
    assert (await harness.breaker.statistics(KEY)).state == "open"


async def test_half_open_admits_one_probe_among_concurrent_callers(
    make_harness: MakeHarness,
) -> None:
    """After the cooldown, of ten concurrent callers exactly one reaches the dependency."""
    harness, dependency = make_harness(FAST), Dependency()
    await open_circuit(harness, dependency)
    harness.advance(COOLDOWN)
    held = Dependency(gate=asyncio.Event())
    calls = [asyncio.ensure_future(harness.breaker.call(KEY, held.ok)) for _ in range(10)]
    pending: set[asyncio.Future[str]] = set(calls)
    async with asyncio.timeout(10):
        # The probe waits at the gate until every other caller has had its answer.
        while len(pending) > 1:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    assert held.gate is not None
    held.gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    rejected = [r for r in results if isinstance(r, CircuitOpenError)]
    assert held.calls == 1
    assert results.count("booked") == 1
    assert len(rejected) == 9
    assert all(r.retry_after > 0 for r in rejected)


async def test_success_threshold_probes_close_the_circuit(make_harness: MakeHarness) -> None:
    """Two successful probes close the circuit and zero the failure count."""
    harness, dependency = make_harness(FAST), Dependency()
    await open_circuit(harness, dependency)
    harness.advance(COOLDOWN)
    await harness.breaker.call(KEY, dependency.ok)
    stats = await harness.breaker.statistics(KEY)
    assert (stats.state, stats.success_count, stats.failure_count) == ("half_open", 1, 3)
    await harness.breaker.call(KEY, dependency.ok)
    stats = await harness.breaker.statistics(KEY)
    assert (stats.state, stats.failure_count) == ("closed", 0)
    assert stats.closed_at is not None
    assert stats.open_until is None
    assert harness.transitions() == [
        ("closed", "open", "failure_threshold"),
        ("open", "half_open", "cooldown_elapsed"),
        ("half_open", "closed", "probes_succeeded"),
    ]


async def test_failed_probe_reopens_and_keeps_counting(make_harness: MakeHarness) -> None:
    """A failed probe reopens the circuit for a new cooldown; the failure count goes on."""
    harness, dependency = make_harness(FAST), Dependency()
    await open_circuit(harness, dependency)
    first = await harness.breaker.statistics(KEY)
    harness.advance(COOLDOWN)
    await fail_times(harness, dependency, 1)
    stats = await harness.breaker.statistics(KEY)
    assert (stats.state, stats.failure_count) == ("open", 4)
    assert stats.open_until is not None
    assert first.open_until is not None
    assert stats.open_until > first.open_until
    assert harness.transitions()[-1] == ("half_open", "open", "probe_failed")


async def test_force_open_holds_past_cooldown_until_reset(make_harness: MakeHarness) -> None:
    """A forced-open circuit stays open past any cooldown; reset closes it."""
    harness, dependency = make_harness(FAST), Dependency()
    stats = await harness.breaker.force_open(KEY)
    assert (stats.state, stats.forced_open) == ("open", True)
    harness.advance(COOLDOWN)
    with pytest.raises(CircuitOpenError):
        await harness.breaker.call(KEY, dependency.ok)
    assert dependency.calls == 0
    stats = await harness.breaker.reset(KEY)
    assert (stats.state, stats.forced_open, stats.failure_count) == ("closed", False, 0)
    assert await harness.breaker.call(KEY, dependency.ok) == "booked"


async def test_result_admitted_under_older_version_is_dropped(make_harness: MakeHarness) -> None:
    """Failures of calls admitted before a reset do not count after it."""
    harness = make_harness(FAST)
    store = harness.store
    admissions = [await store.acquire(KEY, FAST) for _ in range(3)]
    await store.force_open(KEY)
    await store.reset(KEY)
    for admission in admissions:
        assert await store.record(KEY, FAST, admission, Outcome.FAILURE, slow=False) == []
    stats = await store.statistics(KEY)
    assert (stats.state, stats.failure_count) == ("closed", 0)


async def test_expired_probe_lease_admits_another_probe(make_harness: MakeHarness) -> None:
    """A probe that never reports frees its lease after the TTL; its late result is dropped."""
    policy = BreakerPolicy(cooldown_seconds=COOLDOWN, timeout_seconds=0.5)
    harness, dependency = make_harness(policy), Dependency()
    store = harness.store
    await fail_times(harness, dependency, 3)
    harness.advance(COOLDOWN)
    lost = await store.acquire(KEY, policy)
    assert lost.permitted
    assert lost.probe_token
    blocked = await store.acquire(KEY, policy)
    assert not blocked.permitted
    assert 0 < blocked.retry_after <= policy.lease_seconds
    harness.advance(policy.lease_seconds)
    second = await store.acquire(KEY, policy)
    assert second.permitted
    assert second.probe_token != lost.probe_token
    assert await store.record(KEY, policy, lost, Outcome.FAILURE, slow=False) == []
    assert (await store.statistics(KEY)).state == "half_open"


async def test_failure_rate_window_trips(make_harness: MakeHarness) -> None:
    """With the rate window on, 50 % failures over the minimum of calls opens the circuit."""
    policy = BreakerPolicy(
        failure_threshold=100, failure_rate_threshold=50, minimum_calls=4, cooldown_seconds=30
    )
    harness, dependency = make_harness(policy), Dependency()
    for step in (dependency.ok, dependency.fail, dependency.ok):
        with contextlib.suppress(Unavailable):
            await harness.breaker.call(KEY, step)
    stats = await harness.breaker.statistics(KEY)
    assert stats.state == "closed"
    assert stats.failure_rate == pytest.approx(33.33, abs=0.01)
    await fail_times(harness, dependency, 1)
    assert (await harness.breaker.statistics(KEY)).state == "open"
    assert harness.transitions() == [("closed", "open", "failure_rate")]


async def test_slow_call_rate_trips(make_harness: MakeHarness) -> None:
    """Successful but slow calls over the slow-call rate open the circuit."""
    policy = BreakerPolicy(
        slow_call_seconds=0.05, slow_call_rate_threshold=50, minimum_calls=3, cooldown_seconds=30
    )
    harness = make_harness(policy)
    slow, fast = Dependency(clock=harness.monotonic, duration=0.08), Dependency()
    await harness.breaker.call(KEY, fast.ok)
    await harness.breaker.call(KEY, slow.ok)
    stats = await harness.breaker.statistics(KEY)
    assert (stats.state, stats.slow_call_rate) == ("closed", 50.0)
    await harness.breaker.call(KEY, slow.ok)
    assert (await harness.breaker.statistics(KEY)).state == "open"
    assert harness.transitions() == [("closed", "open", "slow_call_rate")]


async def test_list_circuits_shows_every_known_circuit(make_harness: MakeHarness) -> None:
    """list_circuits returns each circuit that has state, sorted by key."""
    harness, dependency = make_harness(FAST), Dependency()
    await harness.breaker.force_open("b:circuit")
    await fail_times(harness, dependency, 1)
    circuits = await harness.breaker.list_circuits()
    assert [(c.circuit_key, c.state) for c in circuits] == [
        (KEY, "closed"),
        ("b:circuit", "open"),
    ]


async def test_two_breakers_on_one_store_share_state(make_harness: MakeHarness) -> None:
    """A circuit opened through one breaker rejects calls through another on the same store."""
    first, second, dependency = make_harness(FAST), make_harness(FAST), Dependency()
    await open_circuit(first, dependency)
    with pytest.raises(CircuitOpenError):
        await second.breaker.call(KEY, dependency.ok)
    assert dependency.calls == 3


async def test_adopt_takes_only_circuits_the_store_does_not_know(
    make_harness: MakeHarness,
) -> None:
    """adopt() copies an open circuit into a store that lacks it, and leaves known ones alone."""
    source = MemoryStore()
    await source.force_open(KEY)
    await source.force_open("known:circuit")
    harness, dependency = make_harness(FAST), Dependency()
    with pytest.raises(Unavailable):
        await harness.breaker.call("known:circuit", dependency.fail)
    taken = await harness.store.adopt(await source.list_circuits())
    assert taken == 1
    with pytest.raises(CircuitOpenError):
        await harness.breaker.call(KEY, dependency.ok)
    adopted = await harness.store.statistics(KEY)
    assert (adopted.state, adopted.forced_open) == ("open", True)
    known = await harness.store.statistics("known:circuit")
    assert (known.state, known.failure_count) == ("closed", 1)


async def test_adopt_keeps_a_half_open_circuit_half_open(make_harness: MakeHarness) -> None:
    """A circuit half-open on the store that stood in is taken over half-open, with no
    transition of its own: the next call is its probe, and the history goes on from
    half_open (before, it came back open and its next call made a second
    open -> half_open, a break in the history's chain)."""
    half_open = machine.statistics_of(
        KEY, machine.CircuitRecord(state="half_open", failure_count=3, version=7), store="sql"
    )
    harness = make_harness(replace(FAST, success_threshold=1))
    dependency = Dependency()
    assert await harness.store.adopt([half_open]) == 1
    adopted = await harness.store.statistics(KEY)
    assert (adopted.state, adopted.version) == ("half_open", 7)
    assert await harness.breaker.call(KEY, dependency.ok) == "booked"
    assert harness.transitions() == [("half_open", "closed", "probes_succeeded")]


class AdmissionAfter:
    """The store, but once ``gate`` is set its admissions first wait for the gate."""

    def __init__(self, store: BreakerStore) -> None:
        self.store = store
        self.gate: asyncio.Event | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def acquire(self, key: str, policy: BreakerPolicy) -> machine.Admission:
        if self.gate is not None:
            await self.gate.wait()
        return await self.store.acquire(key, policy)


async def test_a_read_starts_beside_its_admission_once_the_circuit_was_seen_closed(
    store_factory: StoreFactory,
) -> None:
    """A read of a circuit seen closed starts before its admission answers (here the
    admission waits for the read to start); a first read, and any call, wait for it."""
    store = AdmissionAfter(store_factory())
    breaker = CircuitBreaker(store, policy=FAST, registry=CollectorRegistry())  # type: ignore[arg-type]
    dependency = Dependency()
    store.gate = asyncio.Event()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(breaker.read(KEY, dependency.ok), 0.2)
    assert dependency.calls == 0
    store.gate = None
    assert await breaker.read(KEY, dependency.ok) == "booked"

    started = asyncio.Event()

    async def slots() -> str:
        started.set()
        return "slots"

    store.gate = started
    assert await asyncio.wait_for(breaker.read(KEY, slots), 5) == "slots"
    store.gate = asyncio.Event()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(breaker.call(KEY, dependency.ok), 0.2)
    assert dependency.calls == 1
    await breaker.aclose()


async def test_a_read_the_circuit_refuses_is_cancelled_and_the_next_waits(
    make_harness: MakeHarness,
) -> None:
    """The circuit opened by another breaker: a read started early is cancelled by its
    refusal, and the next read is refused before it starts."""
    first, second, dependency = make_harness(FAST), make_harness(FAST), Dependency()
    assert await first.breaker.read(KEY, dependency.ok) == "booked"
    await open_circuit(second, dependency)
    cancelled: list[bool] = []

    async def hanging() -> str:
        dependency.calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"

    with pytest.raises(CircuitOpenError):
        await first.breaker.read(KEY, hanging)
    await asyncio.sleep(0)
    assert dependency.calls - 4 == len(cancelled) <= 1
    calls = dependency.calls
    with pytest.raises(CircuitOpenError):
        await first.breaker.read(KEY, hanging)
    assert dependency.calls == calls
    assert (await first.breaker.statistics(KEY)).not_permitted_count == 2


async def test_a_circuit_this_breaker_opened_is_not_read_early(make_harness: MakeHarness) -> None:
    """The transition to open that this breaker published stops early reads at once."""
    harness, dependency = make_harness(FAST), Dependency()
    assert await harness.breaker.read(KEY, dependency.ok) == "booked"
    await open_circuit(harness, dependency)
    with pytest.raises(CircuitOpenError):
        await harness.breaker.read(KEY, dependency.ok)
    assert dependency.calls == 4
