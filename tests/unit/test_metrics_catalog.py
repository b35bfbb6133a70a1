"""The metrics catalog: the code, deploy/metrics.txt, the README, rules and dashboards agree."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from bookingguard.api.http_metrics import HttpMetrics, HttpMetricsMiddleware
from bookingguard.api.server import METRICS_DIR_ENV, metrics_view
from bookingguard.booking import validation
from bookingguard.booking.metrics import BookingMetrics
from bookingguard.metrics_catalog import CATALOG, render_metrics_txt
from bookingguard.monitoring.metrics import MonitorMetrics
from bookingguard.resilience import CircuitBreaker, CircuitOpenError, MemoryStore
from bookingguard.resilience.metrics import BreakerMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SELECTOR = re.compile(r"\b(bookingguard_[a-z_]+|up)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r"([a-z_]+)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def all_metrics(registry: CollectorRegistry) -> None:
    """Every metric the service registers: booking, breaker, monitor and HTTP."""
    BookingMetrics(registry)
    BreakerMetrics.for_registry(registry)
    MonitorMetrics(registry)
    HttpMetrics(registry)


def spec_of(series: str) -> tuple[str, tuple[str, ...]]:
    """The declared metric a series name belongs to, and the labels it may carry."""
    if series == "up":
        return series, ()
    if series in CATALOG:
        return series, CATALOG[series].labels
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base in CATALOG and CATALOG[base].kind == "histogram":
            return base, (*CATALOG[base].labels, *(("le",) if suffix == "_bucket" else ()))
    raise AssertionError(f"{series} is not declared in metrics_catalog")


def label_problems(expr: str) -> list[str]:
    """Selectors and groupings of ``expr`` that name a label its metrics do not carry."""
    problems = []
    available = set(TARGET_LABELS)
    for series, matchers in SELECTOR.findall(expr):
        name, labels = spec_of(series)
        available |= set(labels)
        for label, operator, value in MATCHER.findall(matchers):
            if label not in {*labels, *TARGET_LABELS}:
                problems.append(f"{name} has no label {label!r}")
            known = CATALOG[name].known.get(label, ()) if name in CATALOG else ()
            if known and operator == "=" and value not in known:
                problems.append(f"{name}{{{label}}} never takes {value!r}")
    for grouping in GROUPING.findall(expr):
        for label in (part.strip() for part in grouping.split(",")):
            if label and label not in available:
                problems.append(f"grouping by {label!r}, which no metric of the query has")
    return problems


def rule_expressions() -> list[tuple[str, str]]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "bookingguard-rules.yml").read_text())
    return [
        (rule["alert"], rule["expr"]) for group in document["groups"] for rule in group["rules"]
    ]


def panel_expressions() -> list[tuple[str, str]]:
    found = []
    for path in sorted((DEPLOY / "grafana").glob("bookingguard-*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found.append((f"{path.stem}: {panel['title']}", target["expr"]))
    return found


def test_metrics_txt_is_the_catalog_rendered() -> None:
    """deploy/metrics.txt is byte for byte what the catalog renders (regenerate, never edit)."""
    assert (DEPLOY / "metrics.txt").read_text() == render_metrics_txt(), (
        "run: python -m bookingguard.metrics_catalog > deploy/metrics.txt"
    )


def test_readme_metrics_table_lists_the_catalog() -> None:
    """The README's metrics table has one row per declared metric: its type and its labels."""
    section = (ROOT / "README.md").read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`bookingguard_"):
            labels = tuple(label.strip() for label in cells[2].split(",") if label.strip())
            rows[cells[0].strip("`")] = (cells[1].split()[0], labels)
    assert rows == {name: (spec.kind, spec.labels) for name, spec in CATALOG.items()}


def test_the_code_registers_exactly_the_catalog() -> None:
    """Booking, breaker, monitor and HTTP metrics are the declared names, types and help."""
    registry = CollectorRegistry()
    all_metrics(registry)
    registered = {}
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        registered[name] = (family.type, family.documentation)
    assert registered == {name: (spec.kind, spec.help) for name, spec in CATALOG.items()}


@pytest.mark.parametrize(("alert", "expr"), rule_expressions(), ids=lambda value: value[:40])
def test_alert_rules_select_only_declared_labels(alert: str, expr: str) -> None:
    """Every alert rule's selectors and groupings use labels its metrics are declared with."""
    assert label_problems(expr) == [], alert


@pytest.mark.parametrize(("panel", "expr"), panel_expressions(), ids=lambda value: value[:50])
def test_grafana_panels_select_only_declared_labels(panel: str, expr: str) -> None:
    """Every Grafana query's selectors and groupings use labels its metrics are declared with."""
    assert label_problems(expr) == [], panel


def test_the_label_check_catches_the_old_open_alerts_bug() -> None:
    """A selector on a label the metric lacks, or a value it never takes, is reported."""
    assert label_problems('sum(bookingguard_outbox_backlog{rule="x"})') == [
        "bookingguard_outbox_backlog has no label 'rule'"
    ]
    assert label_problems('bookingguard_notifications_total{outcome="error"}') == [
        "bookingguard_notifications_total{outcome} never takes 'error'"
    ]
    assert label_problems("sum by (reason) (bookingguard_rollbacks_total)") == [
        "grouping by 'reason', which no metric of the query has"
    ]


def test_open_alerts_start_at_zero_for_every_rule_with_its_severity() -> None:
    """bookingguard_open_alerts carries rule and severity; phantom bookings read 0, not nothing."""
    registry = CollectorRegistry()
    MonitorMetrics(registry)
    value = registry.get_sample_value(
        "bookingguard_open_alerts", {"rule": "missing_appointment", "severity": "critical"}
    )
    assert value == 0


def test_known_validation_reasons_are_the_validators() -> None:
    """The catalog's validation failure reasons are exactly the ones the validator reports."""
    reasons = {
        value
        for name, value in vars(validation).items()
        if name.isupper() and isinstance(value, str) and not name.startswith("_")
    }
    known = CATALOG["bookingguard_validation_failures_total"].known["reason"]
    assert set(known) == reasons


def test_http_metrics_label_the_route_template_and_status_class() -> None:
    """Requests count by route template (never the path), method and status class."""
    registry = CollectorRegistry()
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    app.add_middleware(HttpMetricsMiddleware, metrics=HttpMetrics(registry))
    client = TestClient(app)
    for path in ("/items/1", "/items/2", "/items/x", "/no/such/thing"):
        client.get(path)
    client.request("BREW", "/items/1")

    def count(route: str, method: str, status_class: str) -> float | None:
        return registry.get_sample_value(
            "bookingguard_http_requests_total",
            {"route": route, "method": method, "status_class": status_class},
        )

    assert count("/items/{item_id}", "GET", "2xx") == 2
    assert count("/items/{item_id}", "GET", "4xx") == 1
    assert count("other", "GET", "4xx") == 1
    assert count("/items/{item_id}", "OTHER", "4xx") == 1
    routes = {
        sample.labels["route"]
        for family in registry.collect()
        for sample in family.samples
        if "route" in sample.labels
    }
    assert routes == {"/items/{item_id}", "other"}


async def test_replicas_report_the_circuit_state_the_shared_store_holds() -> None:
    """After one replica opens and another resets a circuit, both report it closed."""
    store = MemoryStore()
    registries = [CollectorRegistry() for _ in range(2)]
    replicas = [CircuitBreaker(store, registry=registry) for registry in registries]
    key = "appointment_booking:event_type:7"

    async def states() -> list[float | None]:
        found = []
        for breaker, registry in zip(replicas, registries, strict=True):
            BreakerMetrics.for_registry(registry).observe_store(await breaker.list_circuits())
            found.append(registry.get_sample_value("bookingguard_circuit_state", {"circuit": key}))
        return found

    await replicas[0].force_open(key)
    assert await states() == [2, 2]
    await replicas[1].reset(key)
    assert await states() == [0, 0]


def _worker_records_every_metric() -> None:
    """One ``serve --workers`` process: records a value in each metric the process keeps."""

    registry = CollectorRegistry()
    booking = BookingMetrics(registry)
    booking.bookings.labels(result="booked").inc()
    booking.claims_settled.labels(result="claim_abandoned").inc()
    monitor = MonitorMetrics(registry)
    monitor.open_alerts.labels(rule="missing_appointment", severity="critical").set(2)
    monitor.outbox_backlog.labels(channel="slack").set(1)
    monitor.review_queue_size.set(3)
    booking.spool_backlog.set(4)
    http = HttpMetrics(registry)
    http.requests.labels("/metrics", "GET", "2xx").inc()
    http.duration.labels("/metrics", "GET", "2xx").observe(0.01)
    breaker = CircuitBreaker(MemoryStore(), registry=registry)
    BreakerMetrics.for_registry(registry).store_switches.labels("redis", "memory").inc()
    key = "appointment_booking:event_type:1"

    async def calls() -> None:
        async def ok() -> None:
            return None

        await breaker.call(key, ok)
        await breaker.force_open(key)
        with pytest.raises(CircuitOpenError):
            await breaker.call(key, ok)

    asyncio.run(calls())


def test_every_metric_reaches_the_multiprocess_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In multiprocess mode every metric a worker records reaches /metrics, breaker calls too."""
    monkeypatch.setenv(METRICS_DIR_ENV, str(tmp_path))
    worker = multiprocessing.get_context("spawn").Process(target=_worker_records_every_metric)
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == 0
    state = BreakerMetrics(CollectorRegistry()).state
    view = metrics_view(CollectorRegistry(), scrape_time=[state])
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in view.collect()
        if family.samples or family.name == "bookingguard_circuit_state"
    }
    assert exported == set(CATALOG)
    review_queue = view.get_sample_value("bookingguard_review_queue_size")
    assert review_queue == 3
    assert view.get_sample_value("bookingguard_spool_backlog") == 4
    calls = view.get_sample_value(
        "bookingguard_circuit_calls_total",
        {"circuit": "appointment_booking:event_type:1", "outcome": "success"},
    )
    assert calls == 1
