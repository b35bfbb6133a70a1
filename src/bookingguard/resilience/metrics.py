"""Prometheus metrics of the breaker, built from ``metrics_catalog``; labels are bounded.

Counters are kept per process (summed over ``serve --workers`` processes from
prometheus_client's multiprocess files). The circuit state is not: it is read from
the shared store when ``/metrics`` is scraped (``CircuitStateCollector``), so every
replica reports what the store says, not only the transitions it saw itself.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bookingguard.metrics_catalog import CATALOG, counter
from bookingguard.resilience.machine import CLOSED, HALF_OPEN, OPEN, CircuitStatistics

__all__ = [
    "MAX_CIRCUIT_LABELS",
    "OTHER_CIRCUITS",
    "STATE_VALUES",
    "BreakerMetrics",
    "CallCounts",
    "CircuitLabels",
    "CircuitStateCollector",
]

#: How many circuits a process names in its series; any further one is counted under
#: ``OTHER_CIRCUITS``, so ids a model or a caller makes up never grow the series.
MAX_CIRCUIT_LABELS = 100
OTHER_CIRCUITS = "other"

#: Value of the state gauge for each state.
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
#: Outcomes of a call that reached the dependency.
CALL_OUTCOMES = ("failure", "success", "ignored")
#: The transitions the state machine makes (a reset closes from any state).
TRANSITIONS = (
    (CLOSED, OPEN),
    (OPEN, HALF_OPEN),
    (HALF_OPEN, CLOSED),
    (HALF_OPEN, OPEN),
    (OPEN, CLOSED),
)

_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, BreakerMetrics] = (
    weakref.WeakKeyDictionary()
)


class CircuitLabels:
    """The ``circuit`` label of each circuit: its key for the first ``cap`` circuits seen,
    ``OTHER_CIRCUITS`` for the rest."""

    def __init__(self, cap: int = MAX_CIRCUIT_LABELS) -> None:
        self._cap = cap
        self._named: set[str] = set()

    def __call__(self, circuit: str) -> str:
        if circuit in self._named:
            return circuit
        if len(self._named) < self._cap:
            self._named.add(circuit)
            return circuit
        return OTHER_CIRCUITS


class CircuitStateCollector(Collector):
    """``bookingguard_circuit_state`` from the last snapshot of the store's circuits.

    ``/metrics`` reads the store (``CircuitBreaker.list_circuits``) and hands the
    circuits to ``update`` before rendering, which replaces what was known; between
    scrapes the transitions this process makes are applied on top (``set``).
    ``collect`` only reads, it never waits for the store.
    """

    def __init__(self, labels: CircuitLabels) -> None:
        self._labels = labels
        self._states: dict[str, int] = {}

    def update(self, circuits: Iterable[CircuitStatistics]) -> None:
        states: dict[str, int] = {}
        for circuit in circuits:
            self._merge(states, circuit.circuit_key, circuit.state)
        self._states = states

    def set(self, circuit: str, state: str) -> None:
        self._merge(self._states, circuit, state)

    def _merge(self, states: dict[str, int], circuit: str, state: str) -> None:
        """The circuit's state under its label; ``other`` shows the worst of its circuits."""
        label = self._labels(circuit)
        value = STATE_VALUES[state]
        states[label] = max(states.get(label, 0), value) if label == OTHER_CIRCUITS else value

    def _family(self) -> GaugeMetricFamily:
        spec = CATALOG["bookingguard_circuit_state"]
        return GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for circuit, value in sorted(self._states.items()):
            family.add_metric([circuit], value)
        yield family


class CallCounts(Collector):
    """``bookingguard_circuit_calls_total`` counted in a dict and read at scrape time.

    The guarded call's hot path in one process: a dict update instead of a
    ``Counter`` child's locked increment (``bench/breaker_overhead.py``: 0.09 µs
    against 0.37 µs per call, a fifth of the memory store's whole overhead). Under
    ``serve --workers`` a ``Counter`` is used instead: only its values reach the
    multiprocess files that ``/metrics`` reads.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def _family(self) -> CounterMetricFamily:
        spec = CATALOG["bookingguard_circuit_calls_total"]
        return CounterMetricFamily(spec.name, spec.help, labels=list(spec.labels))

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        for (circuit, outcome), count in sorted(self.counts.items()):
            family.add_metric([circuit, outcome], count)
        yield family


class BreakerMetrics:
    """The breaker's collectors, registered once per registry (see ``for_registry``).

    Whether the calls are counted for several processes is read from
    ``PROMETHEUS_MULTIPROC_DIR``, as prometheus_client itself decides it.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.label = CircuitLabels()
        self.state = CircuitStateCollector(self.label)
        registry.register(self.state)
        self.transitions = counter("bookingguard_circuit_transitions_total", registry)
        self.not_permitted = counter("bookingguard_circuit_not_permitted_total", registry)
        self.store_switches = counter("bookingguard_circuit_store_switches_total", registry)
        self._shared_calls: Counter | None = None
        self._call_counts: dict[tuple[str, str], int] | None = None
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self._shared_calls = counter("bookingguard_circuit_calls_total", registry)
        else:
            local = CallCounts()
            registry.register(local)
            self._call_counts = local.counts
        self._known: set[str] = set()

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> BreakerMetrics:
        """The one ``BreakerMetrics`` of ``registry`` (default: the global registry)."""
        chosen = REGISTRY if registry is None else registry
        metrics = _by_registry.get(chosen)
        if metrics is None:
            metrics = _by_registry[chosen] = cls(chosen)
        return metrics

    def call(self, circuit: str, outcome: str) -> None:
        circuit = self.label(circuit)
        counts = self._call_counts
        if counts is not None:
            counts[circuit, outcome] = counts.get((circuit, outcome), 0) + 1
        elif self._shared_calls is not None:
            self._shared_calls.labels(circuit=circuit, outcome=outcome).inc()

    def transition(self, circuit: str, from_state: str, to_state: str) -> None:
        label = self.label(circuit)
        self.transitions.labels(circuit=label, from_state=from_state, to_state=to_state).inc()
        self.state.set(circuit, to_state)

    def refused(self, circuit: str) -> None:
        """A call the open circuit refused."""
        self.not_permitted.labels(circuit=self.label(circuit)).inc()

    def observe_store(self, circuits: Iterable[CircuitStatistics]) -> None:
        """The store's circuits as scraped: their state, and their counters' series at zero.

        Zero series for a circuit this process has not called yet let rates and
        ratios over every circuit the store knows read 0 instead of nothing.
        """
        circuits = list(circuits)
        self.state.update(circuits)
        for circuit in circuits:
            key = self.label(circuit.circuit_key)
            if key in self._known:
                continue
            self._known.add(key)
            for outcome in CALL_OUTCOMES:
                if self._call_counts is not None:
                    self._call_counts.setdefault((key, outcome), 0)
                elif self._shared_calls is not None:
                    self._shared_calls.labels(circuit=key, outcome=outcome)
            for from_state, to_state in TRANSITIONS:
                self.transitions.labels(circuit=key, from_state=from_state, to_state=to_state)
            self.not_permitted.labels(circuit=key)
