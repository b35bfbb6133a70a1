"""In-memory stand-ins for the breaker and the retry, for booking-path tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

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
