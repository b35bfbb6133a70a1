"""Errors raised to callers of a guarded operation, and the one stores raise to the chain."""

from __future__ import annotations

from bookingguard.errors import BookingGuardError
from bookingguard.resilience.outcome import Outcome

__all__ = ["CircuitOpenError", "OperationTimeoutError", "StoreUnavailableError"]


class CircuitOpenError(BookingGuardError):
    """The circuit did not admit the call; try again in ``retry_after`` seconds.

    Raised without calling the dependency, so it says nothing about the dependency's
    health (``breaker_outcome`` is ``IGNORED`` for an outer breaker).
    """

    code = "circuit_open"
    breaker_outcome = Outcome.IGNORED

    def __init__(self, circuit_key: str, *, state: str, retry_after: float) -> None:
        super().__init__(
            f"circuit {circuit_key!r} is {state}: not calling the dependency, "
            f"retry in {retry_after:.1f}s"
        )
        self.circuit_key = circuit_key
        self.state = state
        self.retry_after = max(0.0, retry_after)


class OperationTimeoutError(BookingGuardError, TimeoutError):
    """The guarded operation ran past ``timeout_seconds``; it was counted as a failure."""

    code = "operation_timeout"

    def __init__(self, circuit_key: str, *, timeout_seconds: float) -> None:
        super().__init__(f"operation on circuit {circuit_key!r} exceeded {timeout_seconds:g}s")
        self.circuit_key = circuit_key
        self.timeout_seconds = timeout_seconds


class StoreUnavailableError(BookingGuardError):
    """A breaker store did not answer in time; the fallback chain moves to the next store."""

    code = "breaker_store_unavailable"

    def __init__(self, store: str, reason: str) -> None:
        super().__init__(f"breaker store {store} unavailable: {reason}")
        self.store = store
        self.reason = reason
