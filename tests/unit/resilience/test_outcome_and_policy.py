"""The default outcome classifier and per-prefix policies."""

from __future__ import annotations

import httpx
import pytest

from bookingguard.errors import ConfigurationError
from bookingguard.resilience import CircuitOpenError, Outcome, classify_exception
from bookingguard.resilience.policy import BreakerPolicy, PolicyResolver
from bookingguard.settings import Settings, load_settings


class HttpError(Exception):
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class Declared(Exception):
    breaker_outcome = Outcome.SUCCESS


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (HttpError(500), Outcome.FAILURE),
        (HttpError(503), Outcome.FAILURE),
        (HttpError(429), Outcome.FAILURE),
        (HttpError(404), Outcome.IGNORED),
        (HttpError(409), Outcome.IGNORED),
        (TimeoutError(), Outcome.FAILURE),
        (ConnectionRefusedError(), Outcome.FAILURE),
        (httpx.ConnectError("refused"), Outcome.FAILURE),
        (ValueError("bug"), Outcome.FAILURE),
        (Declared(), Outcome.SUCCESS),
        (CircuitOpenError("k", state="open", retry_after=1), Outcome.IGNORED),
    ],
)
def test_default_classification(error: Exception, outcome: Outcome) -> None:
    """5xx, 429, timeouts and connection errors fail; other 4xx are ignored; errors may decide."""
    assert classify_exception(error) is outcome


def test_httpx_status_errors_are_classified_by_their_response() -> None:
    """An httpx.HTTPStatusError is classified by its response status."""
    request = httpx.Request("POST", "https://api.cal.com/v2/bookings")
    taken = httpx.HTTPStatusError("x", request=request, response=httpx.Response(409))
    down = httpx.HTTPStatusError("x", request=request, response=httpx.Response(502))
    assert classify_exception(taken) is Outcome.IGNORED
    assert classify_exception(down) is Outcome.FAILURE


def test_defaults_come_from_settings() -> None:
    """The default policy has the settings' values: 3 failures, 30 s, 2 probes, 10 s."""
    policy = PolicyResolver.from_settings(Settings().circuit_breaker)("any:key")
    assert policy == BreakerPolicy(
        failure_threshold=3, cooldown_seconds=30, success_threshold=2, timeout_seconds=10
    )
    assert policy.lease_seconds >= policy.timeout_seconds


def test_longest_matching_prefix_overrides() -> None:
    """Overrides apply by key prefix, the longest match winning."""
    settings = Settings.model_validate(
        {
            "circuit_breaker": {
                "overrides": {
                    "appointment_booking:": {"cooldown_seconds": 60},
                    "appointment_booking:event_type:42": {"failure_threshold": 5},
                }
            }
        }
    )
    resolve = PolicyResolver.from_settings(settings.circuit_breaker)
    assert resolve("appointment_booking:event_type:1").cooldown_seconds == 60
    special = resolve("appointment_booking:event_type:42")
    assert (special.failure_threshold, special.cooldown_seconds) == (5, 30)
    assert resolve("calcom:cancel").cooldown_seconds == 30


def test_unknown_override_key_fails_at_start_up() -> None:
    """A misspelt override key is a configuration error naming the key, not ignored."""
    with pytest.raises(ConfigurationError, match=r"circuit_breaker\.overrides.*cooldown"):
        load_settings(circuit_breaker={"overrides": {"x:": {"cooldown": 5}}})
