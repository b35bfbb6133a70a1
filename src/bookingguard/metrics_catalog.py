"""Every Prometheus metric bookingguard exports, declared once: name, type, help, labels.

The collectors are built from these declarations (``counter``, ``gauge``,
``histogram``), ``deploy/metrics.txt`` is rendered from them (``render_metrics_txt``;
``python -m bookingguard.metrics_catalog > deploy/metrics.txt`` writes it, a test holds
the file to it byte for byte), and tests hold the README's table, the alert rules and
the Grafana panels to the names and labels declared here.

Labels stay bounded: never an entity id. Where a label's values are known in
advance (``known``), their series are created at zero, so a panel or an alert sees
``0`` rather than nothing before the first event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import product
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "CATALOG",
    "STATUS_CLASSES",
    "MetricSpec",
    "counter",
    "gauge",
    "histogram",
    "render_metrics_txt",
]

Kind = Literal["counter", "gauge", "histogram"]
#: prometheus_client's multiprocess modes for gauges (how the workers' values combine).
MultiprocessMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent"
]

#: The values the HTTP metrics' ``status_class`` label takes.
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_CHECK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_VALIDATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric. ``name`` is the exposed name (counters end in ``_total``).

    ``known`` maps a label to the values it is known to take; the combinations of
    known values of every label are created at zero when the metric is built.
    ``multiprocess_mode`` says how a gauge combines the ``serve --workers`` processes;
    ``scrape_time`` marks a metric read from a shared store when scraped, not kept
    per process.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    known: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    buckets: tuple[float, ...] = ()
    multiprocess_mode: MultiprocessMode = "all"
    scrape_time: bool = False

    def initial_label_values(self) -> list[tuple[str, ...]]:
        """Every combination of known values, when each label has some; else none."""
        if not self.labels or any(label not in self.known for label in self.labels):
            return []
        return list(product(*(self.known[label] for label in self.labels)))


_SPECS = (
    MetricSpec(
        "bookingguard_inconsistencies_detected_total",
        "counter",
        "Findings per monitor run, by rule and severity.",
        ("rule", "severity"),
    ),
    MetricSpec(
        "bookingguard_auto_corrections_total",
        "counter",
        "Rows auto-corrected by the monitor, by rule.",
        ("rule",),
    ),
    MetricSpec(
        "bookingguard_open_alerts",
        "gauge",
        "Alerts open or acknowledged, by rule and severity (read from the database).",
        ("rule", "severity"),
        multiprocess_mode="mostrecent",
    ),
    MetricSpec(
        "bookingguard_check_duration_seconds",
        "histogram",
        "Duration of a whole monitor run.",
        buckets=_CHECK_BUCKETS,
    ),
    MetricSpec(
        "bookingguard_rule_errors_total",
        "counter",
        "Rules that raised during a run.",
        ("rule",),
    ),
    MetricSpec(
        "bookingguard_notifications_total",
        "counter",
        "Notification deliveries by channel and outcome (sent, failed).",
        ("channel", "outcome"),
        known={"channel": ("slack", "email", "log"), "outcome": ("sent", "failed")},
    ),
    MetricSpec(
        "bookingguard_outbox_backlog",
        "gauge",
        "Outbox messages waiting for delivery, by channel (read from the database).",
        ("channel",),
        known={"channel": ("slack", "email", "log")},
        multiprocess_mode="mostrecent",
    ),
    MetricSpec(
        "bookingguard_review_queue_size",
        "gauge",
        "Open manual review items (read from the database).",
        multiprocess_mode="mostrecent",
    ),
    MetricSpec(
        "bookingguard_circuit_state",
        "gauge",
        "Circuit state in the shared store when scraped: 0 closed, 1 half_open, 2 open.",
        ("circuit",),
        scrape_time=True,
    ),
    MetricSpec(
        "bookingguard_circuit_transitions_total",
        "counter",
        "Circuit state transitions this process made or saw.",
        ("circuit", "from_state", "to_state"),
    ),
    MetricSpec(
        "bookingguard_circuit_calls_total",
        "counter",
        "Calls that reached the dependency, by outcome (failure, success, ignored).",
        ("circuit", "outcome"),
    ),
    MetricSpec(
        "bookingguard_circuit_not_permitted_total",
        "counter",
        "Calls rejected without reaching the dependency.",
        ("circuit",),
    ),
    MetricSpec(
        "bookingguard_circuit_store_switches_total",
        "counter",
        "Moves of the breaker's store chain from one store to another.",
        ("from_store", "to_store"),
    ),
    MetricSpec(
        "bookingguard_validation_duration_seconds",
        "histogram",
        "Post-booking validation time per call, by outcome.",
        ("outcome",),
        known={"outcome": ("success", "failure")},
        buckets=_VALIDATION_BUCKETS,
    ),
    MetricSpec(
        "bookingguard_validation_failures_total",
        "counter",
        "Post-booking validation failures by reason.",
        ("reason",),
        known={
            "reason": (
                "appointment_not_found",
                "call_linkage_mismatch",
                "missing_calcom_booking_id",
                "appointment_too_old",
                "call_flags_inconsistent",
            )
        },
    ),
    MetricSpec(
        "bookingguard_rollbacks_total",
        "counter",
        "Rollbacks of a call's booking flags, by outcome (done, failed).",
        ("outcome",),
        known={"outcome": ("done", "failed")},
    ),
    MetricSpec(
        "bookingguard_booking_retries_total",
        "counter",
        "Cal.com requests of the booking path retried after a transient failure.",
    ),
    MetricSpec(
        "bookingguard_bookings_total",
        "counter",
        "Booking requests by result.",
        ("result",),
    ),
    MetricSpec(
        "bookingguard_claims_settled_total",
        "counter",
        "Claims of booking requests that died, settled in the background, by result.",
        ("result",),
    ),
    MetricSpec(
        "bookingguard_compensations_total",
        "counter",
        "Cancellations of Cal.com bookings we could not keep, by outcome (done, failed).",
        ("outcome",),
        known={"outcome": ("done", "failed")},
    ),
    MetricSpec(
        "bookingguard_spool_backlog",
        "gauge",
        "Failed-booking records in this host's spool, waiting for the database.",
        multiprocess_mode="mostrecent",
    ),
    MetricSpec(
        "bookingguard_http_requests_total",
        "counter",
        "HTTP requests by route template (unmatched: 'other'), method and status class.",
        ("route", "method", "status_class"),
    ),
    MetricSpec(
        "bookingguard_http_request_duration_seconds",
        "histogram",
        "HTTP request duration by route template, method and status class.",
        ("route", "method", "status_class"),
        buckets=_HTTP_BUCKETS,
    ),
)

#: Name → declaration, in the order ``deploy/metrics.txt`` lists them.
CATALOG: Mapping[str, MetricSpec] = {spec.name: spec for spec in _SPECS}


def _spec(name: str, kind: Kind) -> MetricSpec:
    spec = CATALOG[name]
    if spec.kind != kind:
        raise TypeError(f"{name} is declared a {spec.kind}, not a {kind}")
    return spec


def counter(name: str, registry: CollectorRegistry) -> Counter:
    """The declared counter ``name``, registered on ``registry``, known series at zero."""
    spec = _spec(name, "counter")
    built = Counter(spec.name, spec.help, spec.labels, registry=registry)
    for values in spec.initial_label_values():
        built.labels(*values)
    return built


def gauge(name: str, registry: CollectorRegistry) -> Gauge:
    """The declared gauge ``name``, registered on ``registry``, known series at zero."""
    spec = _spec(name, "gauge")
    built = Gauge(
        spec.name,
        spec.help,
        spec.labels,
        registry=registry,
        multiprocess_mode=spec.multiprocess_mode,
    )
    for values in spec.initial_label_values():
        built.labels(*values)
    return built


def histogram(name: str, registry: CollectorRegistry) -> Histogram:
    """The declared histogram ``name``, registered on ``registry``, known series at zero."""
    spec = _spec(name, "histogram")
    built = Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=spec.buckets)
    for values in spec.initial_label_values():
        built.labels(*values)
    return built


_HEADER = """\
# Every Prometheus metric bookingguard exports: name, type, labels. Generated from
# src/bookingguard/metrics_catalog.py (python -m bookingguard.metrics_catalog); a test
# holds this file, the README's table, the alert rules and the Grafana dashboards to it.
# Labels stay bounded: never an entity id.
"""


def render_metrics_txt() -> str:
    """The text of ``deploy/metrics.txt``: one line per metric, name, type and labels."""
    lines = [_HEADER.rstrip("\n")]
    for spec in _SPECS:
        lines.append(f"{spec.name:<46}{spec.kind:<11}{','.join(spec.labels)}".rstrip())
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_metrics_txt(), end="")
