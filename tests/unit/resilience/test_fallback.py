"""The store chain: move down on an outage, recheck after a while, move back, never raise."""

from __future__ import annotations

from bookingguard.resilience import (
    BreakerPolicy,
    FallbackStore,
    MemoryStore,
    Outcome,
    StoreUnavailableError,
)
from bookingguard.resilience.machine import Admission, CircuitStatistics, Transition

KEY = "appointment_booking:event_type:2"
POLICY = BreakerPolicy()


class SwitchableStore(MemoryStore):
    """A memory store that can be made unavailable, counting the calls it is asked."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.down = False
        self.asked = 0

    def _check(self) -> None:
        self.asked += 1
        if self.down:
            raise StoreUnavailableError(self.name, "switched off")

    async def acquire(self, key: str, policy: BreakerPolicy) -> Admission:
        self._check()
        return await super().acquire(key, policy)

    async def record(
        self, key: str, policy: BreakerPolicy, admission: Admission, outcome: Outcome, *, slow: bool
    ) -> list[Transition]:
        self._check()
        return await super().record(key, policy, admission, outcome, slow=slow)

    async def statistics(self, key: str) -> CircuitStatistics:
        self._check()
        return await super().statistics(key)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chain() -> tuple[FallbackStore, SwitchableStore, list[tuple[str, str]], Clock]:
    primary, clock, switches = SwitchableStore("primary"), Clock(), []
    store = FallbackStore(
        [primary, MemoryStore()],
        recheck_seconds=5,
        monotonic=clock,
        on_switch=lambda a, b: switches.append((a, b)),
    )
    return store, primary, switches, clock


async def test_outage_moves_down_and_skips_the_store_until_recheck() -> None:
    """An unavailable store is asked once, then left alone until the recheck interval passes."""
    store, primary, switches, clock = chain()
    primary.down = True
    assert (await store.acquire(KEY, POLICY)).store == "memory"
    assert (await store.acquire(KEY, POLICY)).store == "memory"
    assert primary.asked == 1
    assert switches == [("primary", "memory")]
    primary.down = False
    clock.now = 5.1
    assert (await store.acquire(KEY, POLICY)).store == "primary"
    assert switches == [("primary", "memory"), ("memory", "primary")]


async def test_result_on_a_store_that_went_down_is_dropped_quietly() -> None:
    """A call admitted by a store that then fails loses its result; nothing is raised."""
    store, primary, _, _ = chain()
    admission = await store.acquire(KEY, POLICY)
    primary.down = True
    assert await store.record(KEY, POLICY, admission, Outcome.FAILURE, slow=False) == []
    primary.down = False
    assert (await primary.statistics(KEY)).failure_count == 0


async def test_returning_store_adopts_circuits_opened_while_it_was_away() -> None:
    """A circuit that opened on the stand-in store is still open after the chain returns."""
    store, primary, _, clock = chain()
    primary.down = True
    admission = await store.acquire(KEY, POLICY)
    for _ in range(POLICY.failure_threshold):
        admission = await store.acquire(KEY, POLICY)
        await store.record(KEY, POLICY, admission, Outcome.FAILURE, slow=False)
    primary.down = False
    clock.now = 10
    rejected = await store.acquire(KEY, POLICY)
    assert (rejected.store, rejected.permitted, rejected.state) == ("primary", False, "open")
    assert (await primary.statistics(KEY)).failure_count == POLICY.failure_threshold
