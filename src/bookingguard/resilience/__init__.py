"""Resilience: a circuit breaker that holds across processes, and retry with backoff.

``CircuitBreaker.from_settings(settings)`` guards calls per circuit key over the
store chain Redis → SQL → memory; ``bookingguard.resilience.retry`` retries
transient failures.
"""

from bookingguard.resilience.breaker import CircuitBreaker
from bookingguard.resilience.errors import (
    CircuitOpenError,
    OperationTimeoutError,
    StoreUnavailableError,
)
from bookingguard.resilience.events import BreakerEvent, EventKind, Listener
from bookingguard.resilience.machine import (
    CircuitStatistics,
    CircuitStatus,
    Transition,
    circuit_status,
)
from bookingguard.resilience.metrics import BreakerMetrics
from bookingguard.resilience.outcome import Classifier, Outcome, classify_exception
from bookingguard.resilience.policy import BreakerPolicy, PolicyResolver
from bookingguard.resilience.stores import (
    BreakerStore,
    FallbackStore,
    MemoryStore,
    RedisStore,
    SqlStore,
    store_from_settings,
)

__all__ = [
    "BreakerEvent",
    "BreakerMetrics",
    "BreakerPolicy",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitStatistics",
    "CircuitStatus",
    "Classifier",
    "EventKind",
    "FallbackStore",
    "Listener",
    "MemoryStore",
    "OperationTimeoutError",
    "Outcome",
    "PolicyResolver",
    "RedisStore",
    "SqlStore",
    "StoreUnavailableError",
    "Transition",
    "circuit_status",
    "classify_exception",
    "store_from_settings",
]
