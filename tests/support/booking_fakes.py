"""In-memory stand-ins for the breaker and the retry, and a watched store, for booking-path
tests."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from bookingguard.booking.store import BookingStore
from bookingguard.resilience import CircuitOpenError

T = TypeVar("T")


class FakeBreaker:
    """Passes calls through and records their keys; refuses them all when ``open``."""

    def __init__(self) -> None:
        self.open = False
        self.keys: list[str] = []

    async def call(self, circuit_key: str, fn: Callable[[], Awaitable[T]], /) -> T:
        self.keys.append(circuit_key)
        if self.open:
            raise CircuitOpenError(circuit_key, state="open", retry_after=30.0)
        return await fn()

    async def read(self, circuit_key: str, fn: Callable[[], Awaitable[T]], /) -> T:
        return await self.call(circuit_key, fn)


class ImmediateRetrier:
    """Retries up to ``attempts`` times without sleeping; records the waits it was asked for."""

    def __init__(self, attempts: int = 3) -> None:
        self.attempts = attempts
        self.waits: list[float | None] = []

    async def __call__(
        self,
        fn: Callable[[], Awaitable[T]],
        /,
        *,
        is_retryable: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None],
    ) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return await fn()
            except Exception as exc:
                if attempt == self.attempts or not is_retryable(exc):
                    raise
                self.waits.append(retry_after(exc))
        raise AssertionError("unreachable")


class Watched:
    """A store whose every operation is passed through, ``on_call(name)`` told after it."""

    def __init__(self, store: BookingStore, on_call: Callable[[str], None]) -> None:
        self._store = store
        self._on_call = on_call

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self._store, name)
        if not inspect.iscoroutinefunction(operation):
            return operation

        async def watched(*args: Any, **kwargs: Any) -> Any:
            result = await operation(*args, **kwargs)
            self._on_call(name)
            return result

        return watched


def watched(store: BookingStore, on_call: Callable[[str], None]) -> BookingStore:
    return cast(BookingStore, Watched(store, on_call))
