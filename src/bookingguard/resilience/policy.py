"""Per-circuit thresholds: the settings' defaults, overridden by the longest matching key prefix."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Self

from bookingguard.settings import CircuitBreakerSettings

__all__ = ["BreakerPolicy", "PolicyResolver"]


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a circuit trips and how it recovers.

    Consecutive failures always trip it; ``failure_rate_threshold`` (percent) and
    ``slow_call_seconds`` additionally turn on the time-bucketed window, which trips
    when at least ``minimum_calls`` calls in ``window_seconds`` reach the rate.
    """

    failure_threshold: int = 3
    cooldown_seconds: float = 30.0
    success_threshold: int = 2
    timeout_seconds: float = 10.0
    failure_rate_threshold: float | None = None
    window_seconds: int = 60
    minimum_calls: int = 5
    slow_call_seconds: float | None = None
    slow_call_rate_threshold: float = 50.0
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
