"""Retry: backoff with jitter, retryable outcomes only, Retry-After and the time budget."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import httpx
import pytest

from bookingguard.resilience.retry import (
    RetryPolicy,
    is_testing,
    retry_after_from,
    retry_async,
    set_testing,
)
from bookingguard.settings import Settings


class Flaky(Exception):
    status_code = 503


class Throttled(Exception):
    status_code = 429

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after


class Rejected(Exception):
    status_code = 422


class FakeTime:
    """A clock that only moves when the injected sleep sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(
    *errors: Exception, result: str = "ok"
) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []
    pending = list(errors)

    async def attempt() -> str:
        calls.append(1)
        if pending:
            raise pending.pop(0)
        return result

    return calls, attempt


@pytest.fixture
def fake() -> FakeTime:
    """A fresh fake clock and sleep."""
    return FakeTime()


async def test_defaults_from_settings_wait_one_then_two_seconds(fake: FakeTime) -> None:
    """3 attempts from settings: waits of 1 s and 2 s, each with at most 10 % jitter."""
    policy = RetryPolicy.from_settings(Settings())
    assert (policy.attempts, policy.base_delay, policy.budget_seconds) == (3, 1.0, 30.0)
    calls, attempt = failing(Flaky(), Flaky())
    result = await retry_async(
        attempt,  # type: ignore[arg-type]
        policy=policy,
        sleep=fake.sleep,
        clock=fake.clock,
        rng=random.Random(7),
    )
    assert (result, len(calls)) == ("ok", 3)
    assert 1.0 <= fake.sleeps[0] <= 1.1
    assert 2.0 <= fake.sleeps[1] <= 2.2


async def test_gives_up_after_the_last_attempt(fake: FakeTime) -> None:
    """The last attempt's error is raised after `attempts` calls."""
    calls, attempt = failing(Flaky(), Flaky(), Flaky(), Flaky())
    with pytest.raises(Flaky):
        await retry_async(
            attempt,
            policy=RetryPolicy(attempts=3),
            sleep=fake.sleep,
            clock=fake.clock,
        )
    assert len(calls) == 3


async def test_attempts_are_numbered_on_from_the_first(fake: FakeTime) -> None:
    """The first attempt runs before tenacity takes over: the retries after it are still
    numbered 1, 2, 3 and back off 1, 2, 4 s."""
    reported: list[tuple[int, float]] = []
    calls, attempt = failing(Flaky(), Flaky(), Flaky())
    result = await retry_async(
        attempt,  # type: ignore[arg-type]
        policy=RetryPolicy(attempts=4, jitter=0.0),
        sleep=fake.sleep,
        clock=fake.clock,
        on_retry=lambda n, _e, delay: reported.append((n, delay)),
    )
    assert (result, len(calls)) == ("ok", 4)
    assert reported == [(1, 1.0), (2, 2.0), (3, 4.0)]
    assert fake.sleeps == [1.0, 2.0, 4.0]


async def test_one_attempt_is_never_retried(fake: FakeTime) -> None:
    """``attempts=1``: a retryable error is raised after the only call."""
    calls, attempt = failing(Flaky())
    with pytest.raises(Flaky):
        await retry_async(attempt, policy=RetryPolicy(attempts=1), sleep=fake.sleep)
    assert (len(calls), fake.sleeps) == (1, [])


async def test_non_retryable_errors_are_raised_at_once(fake: FakeTime) -> None:
    """A 422 is the caller's problem: no retry."""
    calls, attempt = failing(Rejected())
    with pytest.raises(Rejected):
        await retry_async(
            attempt,
            policy=RetryPolicy(),
            sleep=fake.sleep,
            clock=fake.clock,
        )
    assert (len(calls), fake.sleeps) == (1, [])


async def test_retry_after_longer_than_backoff_is_honoured(fake: FakeTime) -> None:
    """A 429 with Retry-After 5 waits 5 s instead of the 1 s backoff."""
    calls, attempt = failing(Throttled(5.0))
    await retry_async(
        attempt,  # type: ignore[arg-type]
        policy=RetryPolicy(),
        sleep=fake.sleep,
        clock=fake.clock,
    )
    assert (len(calls), fake.sleeps) == (2, [5.0])


async def test_no_retry_whose_wait_would_pass_the_budget(fake: FakeTime) -> None:
    """A Retry-After beyond the remaining budget ends the retries with the error."""
    calls, attempt = failing(Flaky(), Throttled(25.0))
    with pytest.raises(Throttled):
        await retry_async(
            attempt,
            policy=RetryPolicy(attempts=5, budget_seconds=20),
            sleep=fake.sleep,
            clock=fake.clock,
            rng=random.Random(1),
        )
    assert len(calls) == 2
    assert len(fake.sleeps) == 1


async def test_testing_switch_turns_waits_off(fake: FakeTime) -> None:
    """With set_testing(True) no sleep happens, yet the delays are still reported."""
    reported: list[float] = []
    calls, attempt = failing(Flaky(), Flaky())
    set_testing(True)
    assert is_testing()
    try:
        await retry_async(
            attempt,
            policy=RetryPolicy(),
            sleep=fake.sleep,
            clock=fake.clock,
            on_retry=lambda _n, _e, delay: reported.append(delay),
        )
    finally:
        set_testing(False)
    assert not is_testing()
    assert (len(calls), fake.sleeps, len(reported)) == (3, [], 2)


def test_retry_after_header_is_read_from_http_errors() -> None:
    """Retry-After comes from an attribute or from an HTTP response header."""
    request = httpx.Request("POST", "https://api.cal.com/v2/bookings")
    response = httpx.Response(429, headers={"Retry-After": "7"})
    error = httpx.HTTPStatusError("slow down", request=request, response=response)
    assert retry_after_from(error) == 7.0
    assert retry_after_from(Throttled(3)) == 3.0
    assert retry_after_from(Flaky()) is None
