"""Prometheus metrics of the breaker; labels are bounded (circuit, outcome, state), never ids."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from bookingguard.resilience.machine import CLOSED, HALF_OPEN, OPEN

__all__ = ["STATE_VALUES", "BreakerMetrics"]

#: Value of the state gauge for each state.
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, BreakerMetrics] = (
    weakref.WeakKeyDictionary()
)


class BreakerMetrics:
    """The breaker's collectors, registered once per registry (see ``for_registry``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.state = Gauge(
            "bookingguard_circuit_state",
            "Circuit state: 0 closed, 1 half_open, 2 open.",
            ["circuit"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.transitions = Counter(
            "bookingguard_circuit_transitions",
            "Circuit state transitions.",
            ["circuit", "from_state", "to_state"],
            registry=registry,
        )
        self.calls = _CallCounts()
        registry.register(self.calls)
        self.not_permitted = Counter(
            "bookingguard_circuit_not_permitted",
            "Calls rejected without reaching the dependency.",
            ["circuit"],
            registry=registry,
        )
        self.store_switches = Counter(
            "bookingguard_circuit_store_switches",
            "Moves of the store chain from one store to another.",
            ["from_store", "to_store"],
            registry=registry,
        )

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> BreakerMetrics:
        """The one ``BreakerMetrics`` of ``registry`` (default: the global registry)."""
        chosen = REGISTRY if registry is None else registry
        metrics = _by_registry.get(chosen)
        if metrics is None:
            metrics = _by_registry[chosen] = cls(chosen)
        return metrics

    def call(self, circuit: str, outcome: str) -> None:
        counts = self.calls.counts
        counts[circuit, outcome] = counts.get((circuit, outcome), 0) + 1

    def transition(self, circuit: str, from_state: str, to_state: str) -> None:
        self.transitions.labels(circuit=circuit, from_state=from_state, to_state=to_state).inc()
        self.state.labels(circuit=circuit).set(STATE_VALUES[to_state])


class _CallCounts(Collector):
    """Calls by circuit and outcome, counted in a dict and read at scrape time.

    A labelled ``Counter.inc`` takes a lock on every call; this counter is on the
    hot path of every guarded call, which only ever runs on the event loop's thread.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            "bookingguard_circuit_calls",
            "Calls that reached the dependency, by outcome (failure, success, ignored).",
            labels=["circuit", "outcome"],
        )

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        for (circuit, outcome), count in sorted(self.counts.items()):
            family.add_metric([circuit, outcome], count)
        yield family
