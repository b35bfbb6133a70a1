"""Per-circuit thresholds: the settings' defaults, overridden by the longest matching key prefix.

``BreakerPolicy()`` is the policy of a default ``CircuitBreakerSettings``; every
default lives in ``settings/model.py`` and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Self

from bookingguard.settings import CircuitBreakerSettings

__all__ = ["BreakerPolicy", "PolicyResolver"]

#: The defaults are the settings model's: written once, in ``settings/model.py``.
_DEFAULTS = CircuitBreakerSettings()


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a circuit trips and how it recovers.

    Consecutive failures always trip it; ``failure_rate_threshold`` (percent) and
    ``slow_call_seconds`` additionally turn on the time-bucketed window, which trips
    when at least ``minimum_calls`` calls in ``window_seconds`` reach the rate.
    """

    failure_threshold: int = _DEFAULTS.failure_threshold
    cooldown_seconds: float = _DEFAULTS.cooldown_seconds
    success_threshold: int = _DEFAULTS.success_threshold
    timeout_seconds: float = _DEFAULTS.timeout_seconds
    failure_rate_threshold: float | None = _DEFAULTS.failure_rate_threshold
    window_seconds: int = _DEFAULTS.window_seconds
    minimum_calls: int = _DEFAULTS.minimum_calls
    slow_call_seconds: float | None = _DEFAULTS.slow_call_seconds
    slow_call_rate_threshold: float = _DEFAULTS.slow_call_rate_threshold
    #: whether every call must be recorded in the time window (derived, read on the hot path)
    windowed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        windowed = self.failure_rate_threshold is not None or self.slow_call_seconds is not None
        object.__setattr__(self, "windowed", windowed)

    @property
    def lease_seconds(self) -> float:
        """How long a half-open probe holds its lease: longer than the call may run.

        The margin past the timeout (as long again, at most a second) covers recording
        the probe's result after its timeout fires.
        """
        return self.timeout_seconds + min(1.0, self.timeout_seconds)

    @property
    def bucket_seconds(self) -> float:
        """Width of one window bucket: a tenth of the window, at least a second."""
        return max(1.0, self.window_seconds / 10)

    def is_slow(self, duration: float) -> bool:
        return self.slow_call_seconds is not None and duration >= self.slow_call_seconds

    @classmethod
    def from_settings(cls, section: CircuitBreakerSettings) -> Self:
        """The policy the section's values describe (its per-circuit fields)."""
        return cls(**{f.name: getattr(section, f.name) for f in fields(cls) if f.init})


class PolicyResolver:
    """Finds the policy of a circuit key: the longest prefix in ``overrides`` wins."""

    def __init__(
        self, default: BreakerPolicy, overrides: dict[str, BreakerPolicy] | None = None
    ) -> None:
        self.default = default
        self._overrides = sorted((overrides or {}).items(), key=lambda item: -len(item[0]))
        self._cache: dict[str, BreakerPolicy] = {}

    def cached(self, circuit_key: str) -> BreakerPolicy | None:
        """The policy if this key was resolved before (the hot path), else None."""
        return self._cache.get(circuit_key)

    def __call__(self, circuit_key: str) -> BreakerPolicy:
        policy = self._cache.get(circuit_key)
        if policy is None:
            policy = next(
                (p for prefix, p in self._overrides if circuit_key.startswith(prefix)),
                self.default,
            )
            if len(self._cache) < 10_000:
                self._cache[circuit_key] = policy
        return policy

    @classmethod
    def from_settings(cls, section: CircuitBreakerSettings) -> Self:
        default = BreakerPolicy.from_settings(section)
        # The settings validated the override keys; values replace the defaults' fields.
        overrides = {
            prefix: replace(default, **values)  # type: ignore[arg-type]
            for prefix, values in section.overrides.items()
        }
        return cls(default, overrides)
