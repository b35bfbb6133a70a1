"""``FallbackStore``: Redis → SQL → memory, so the breaker never fails because a store did."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from bookingguard.resilience.errors import StoreUnavailableError
from bookingguard.resilience.machine import CLOSED, Admission, CircuitStatistics, Transition
from bookingguard.resilience.outcome import Outcome
from bookingguard.resilience.policy import BreakerPolicy
from bookingguard.resilience.stores.base import BreakerStore
from bookingguard.resilience.stores.redis import RedisStore
from bookingguard.settings import CircuitBreakerSettings

__all__ = ["FallbackStore", "StoreSwitchListener"]

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Called with (from_store, to_store) when the chain moves down or back up.
StoreSwitchListener = Callable[[str, str], None]


class FallbackStore:
    """Tries its stores in order; a store that is unavailable is skipped for a while.

    Each store is asked in turn until one answers; one that raised
    ``StoreUnavailableError`` is left alone for ``recheck_seconds`` and then tried
    again, so the chain returns to Redis once Redis answers. Before it returns, the
    earlier store adopts the circuits still open on the store that stood in, so a
    Redis that restarted empty does not forget them; a Redis that restarted while this
    process made no call (it answers NOSCRIPT) takes them from the next store. Moving
    to a later store calls ``on_switch`` (the breaker emits ``storage_degraded``),
    moving back calls it too (``storage_recovered``). The last store should be a
    ``MemoryStore``, which cannot fail. A result is recorded on the store that admitted
    the call; if that store is gone, the result is dropped (the next store never saw
    the admission).
    """

    def __init__(
        self,
        stores: Sequence[BreakerStore],
        *,
        recheck_seconds: float = CircuitBreakerSettings().store_recheck_seconds,
        monotonic: Callable[[], float] = time.monotonic,
        on_switch: StoreSwitchListener | None = None,
    ) -> None:
        if not stores:
            raise ValueError("a fallback chain needs at least one store")
        self.stores = list(stores)
        self.name = "+".join(store.name for store in self.stores)
        self.durable = False
        self.on_switch = on_switch
        self._recheck = recheck_seconds
        self._monotonic = monotonic
        self._down_until = [0.0] * len(self.stores)
        self._by_name = {store.name: store for store in self.stores}
        self._index = {store.name: index for index, store in enumerate(self.stores)}
        self._active = self.stores[0].name
        for index, store in enumerate(self.stores[:-1]):
            if isinstance(store, RedisStore):
                store.on_scripts_lost = functools.partial(self._refill, index)

    @property
    def active(self) -> BreakerStore:
        """The store that answered last."""
        return self._by_name[self._active]

    def _answered(self, store: BreakerStore) -> None:
        if store.name != self._active:
            previous, self._active = self._active, store.name
            log.warning("circuit breaker store switched from %s to %s", previous, store.name)
            if self.on_switch is not None:
                self.on_switch(previous, store.name)

    async def _first(self, step: Callable[[BreakerStore], Awaitable[T]]) -> T:
        now = self._monotonic()
        last = len(self.stores) - 1
        active = self._index[self._active]
        for index, store in enumerate(self.stores):
            if index < last and self._down_until[index] > now:
                continue
            try:
                if index < active:
                    await self._hand_back(store)
                result = await step(store)
            except StoreUnavailableError as exc:
                if index == last:
                    raise
                log.warning("%s", exc.message)
                self._down_until[index] = now + self._recheck
                continue
            self._down_until[index] = 0.0
            self._answered(store)
            return result
        raise AssertionError("unreachable: the last store either answers or raises")

    async def _hand_back(self, store: BreakerStore) -> None:
        """Before returning to ``store``, give it the circuits open on the store in use."""
        await _give_open_circuits(self.active, store)

    async def _refill(self, index: int) -> None:
        """The store at ``index`` restarted empty while this process stayed with it: give
        it the circuits still open on the next store (which the audit kept up to date)."""
        await _give_open_circuits(self.stores[index + 1], self.stores[index])

    async def adopt(self, circuits: list[CircuitStatistics]) -> int:
        return await self._first(lambda store: store.adopt(circuits))

    async def acquire(self, key: str, policy: BreakerPolicy) -> Admission:
        return await self._first(lambda store: store.acquire(key, policy))

    async def record(
        self, key: str, policy: BreakerPolicy, admission: Admission, outcome: Outcome, *, slow: bool
    ) -> list[Transition]:
        store = self._by_name.get(admission.store, self.active)
        try:
            return await store.record(key, policy, admission, outcome, slow=slow)
        except StoreUnavailableError as exc:
            index = self.stores.index(store)
            if index == len(self.stores) - 1:
                raise
            log.warning("%s; result of a call on %r dropped", exc.message, key)
            self._down_until[index] = self._monotonic() + self._recheck
            return []

    async def statistics(self, key: str) -> CircuitStatistics:
        return await self._first(lambda store: store.statistics(key))

    async def force_open(self, key: str) -> list[Transition]:
        return await self._first(lambda store: store.force_open(key))

    async def reset(self, key: str) -> list[Transition]:
        return await self._first(lambda store: store.reset(key))

    async def list_circuits(self) -> list[CircuitStatistics]:
        return await self._first(lambda store: store.list_circuits())

    async def aclose(self) -> None:
        for store in self.stores:
            await store.aclose()


async def _give_open_circuits(source: BreakerStore, target: BreakerStore) -> None:
    """``target`` adopts the circuits not closed on ``source`` (none if ``source`` is out)."""
    try:
        circuits = await source.list_circuits()
    except StoreUnavailableError:
        return
    still_open = [stats for stats in circuits if stats.state != CLOSED]
    if still_open:
        taken = await target.adopt(still_open)
        log.warning("%s took over %d open circuit(s) from %s", target.name, taken, source.name)
