"""Retry with exponential backoff, jitter, Retry-After and a total time budget.

Built on tenacity. stamina (our dependency, itself built on tenacity) was the
first choice, but its jitter is an additive number of seconds where we want a
multiplicative 0-10 %, it cannot take an injected sleep or clock, and it cannot
honour a per-error Retry-After together with a budget; tenacity's pluggable
``wait``/``stop``/``sleep`` give all three, so we use it directly.

Schedule: attempt ``n`` failing with a retryable error waits
``base_delay * 2**(n-1) * (1 + uniform(0, jitter))`` (1 s, 2 s, 4 s … by default),
or the error's Retry-After when that is longer. A retry whose wait would end past
``budget_seconds`` since the first attempt is not made: the last error is raised.
``set_testing(True)`` turns every wait into no wait (the delays are still computed
and reported to ``on_retry``), like ``stamina.set_testing``.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Self, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from bookingguard.resilience.errors import CircuitOpenError
from bookingguard.resilience.outcome import Outcome, classify_exception

if TYPE_CHECKING:
    from bookingguard.settings import Settings

__all__ = [
    "RetryPolicy",
    "default_is_retryable",
    "is_testing",
    "retry_after_from",
    "retry_async",
    "set_testing",
]

T = TypeVar("T")
_testing = False


def set_testing(enabled: bool) -> None:
    """Make every retry wait zero seconds (for test suites); ``False`` restores real waits."""
    global _testing
    _testing = enabled


def is_testing() -> bool:
    return _testing


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry; ``attempts`` counts the first call too."""

    attempts: int = 3
    base_delay: float = 1.0
    jitter: float = 0.10
    budget_seconds: float = 30.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), before Retry-After."""
        factor: float = 2.0 ** (attempt - 1)
        return self.base_delay * factor * (1 + rng.uniform(0, self.jitter))

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        section = settings.validation
        return cls(
            attempts=section.max_retry_attempts,
            base_delay=section.base_delay_seconds,
            budget_seconds=section.retry_budget_seconds,
        )


def default_is_retryable(exc: BaseException) -> bool:
    """Transient errors: what the breaker counts as a failure, or an open circuit."""
    return isinstance(exc, CircuitOpenError) or classify_exception(exc) is Outcome.FAILURE


def retry_after_from(exc: BaseException) -> float | None:
    """Seconds the error asks us to wait: a ``retry_after`` attribute or a Retry-After header."""
    declared = getattr(exc, "retry_after", None)
    if isinstance(declared, int | float) and not isinstance(declared, bool):
        return max(0.0, float(declared))
    response = exc.response if isinstance(exc, httpx.HTTPStatusError) else None
    header = response.headers.get("retry-after") if response is not None else None
    if header is None:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        moment = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    is_retryable: Callable[[BaseException], bool] = default_is_retryable,
    retry_after: Callable[[BaseException], float | None] = retry_after_from,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, a non-retryable error, the last attempt or the budget.

    ``on_retry(attempt, error, delay)`` is told about each retry before its wait.

    The first attempt runs before tenacity is set up, and tenacity takes over only
    after a retryable failure, counting its attempts on from the first. Nearly every
    call succeeds at once, and around one that does tenacity's set-up and bookkeeping
    cost 97 us, the first attempt made here 3 us (through ``PolicyRetrier``, a call that
    returns at once, 2 000 rounds, median). check_availability makes one such call, and
    its goal in ``bench/booking_path.py``, one durable commit (0.27-0.38 ms here), is
    all the service may add to the Cal.com request.
    """
    started = clock()
    try:
        return await fn()
    except BaseException as exc:
        if not is_retryable(exc):
            raise
        first = exc
    chosen_rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

    def delay_after(attempt: int, error: BaseException) -> float:
        delay = policy.backoff(attempt, chosen_rng)
        hinted = retry_after(error)
        return max(delay, hinted) if hinted is not None else delay

    def stops(attempt: int, upcoming_sleep: float) -> bool:
        if attempt >= policy.attempts:
            return True
        return clock() - started + upcoming_sleep > policy.budget_seconds

    async def pause(seconds: float) -> None:
        if not _testing:
            await sleep(seconds)

    delay = delay_after(1, first)
    if stops(1, delay):
        raise first
    if on_retry is not None:
        on_retry(1, first, delay)
    await pause(delay)

    # Tenacity counts from 1 again: its attempt n is the (n + 1)th.
    def wait(state: RetryCallState) -> float:
        return delay_after(state.attempt_number + 1, _error_of(state))

    def stop(state: RetryCallState) -> bool:
        return stops(state.attempt_number + 1, state.upcoming_sleep or 0.0)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry(state.attempt_number + 1, _error_of(state), state.upcoming_sleep or 0.0)

    retrying = AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception(is_retryable),
        sleep=pause,
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(fn)


def _error_of(state: RetryCallState) -> BaseException:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    if error is None:
        raise RuntimeError("retry decided on an attempt that did not fail")
    return error
