"""Our alert rules and Grafana queries, asked of a real Prometheus scraping ``serve --workers 2``.

The service runs on PostgreSQL and Redis with the demo's data (its phantom bookings
among them; ``bookingguard check --all`` opens their ``missing_appointment`` alerts,
and the scheduled monitor runs every 2 s) and one circuit held open with
``bookingguard breaker open``. Debian's ``prometheus``
scrapes it every second and evaluates our rule file every second.

The rule file Prometheus loads is ``deploy/prometheus/bookingguard-rules.yml`` with
every ``for:`` rewritten to ``0s`` (the expressions are untouched), so an alert fires
at its first true evaluation instead of minutes later; ``promtool test rules``
covers the durations.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.conftest import TestDatabase, service_unavailable
from tests.e2e.test_serve import free_port, wait_for
from tests.support.cli import run_cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CIRCUIT = "appointment_booking:event_type:4242"
#: Grafana's variables, replaced by what a dashboard over the last hour would use.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "${__range}": "1h",
}
DEADLINE_SECONDS = 45.0

T = TypeVar("T")


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        service_unavailable("prometheus", "install Debian's prometheus package")
        raise AssertionError("unreachable: service_unavailable fails or skips")
    return found


def rules_without_durations(target: Path) -> list[str]:
    """Our rule file with every ``for:`` set to 0s, written to ``target``; the alert names."""
    document = yaml.safe_load((DEPLOY / "prometheus" / "bookingguard-rules.yml").read_text())
    names = []
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
            names.append(rule["alert"])
    target.write_text(yaml.safe_dump(document))
    return names


def panel_queries() -> list[tuple[str, str]]:
    """(dashboard: panel, PromQL) for every target of every dashboard, variables replaced."""
    found = []
    for path in sorted((DEPLOY / "grafana").glob("bookingguard-*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, expr
                found.append((f"{path.stem}: {panel['title']}", expr))
    return found


def poll(
    what: str,
    probe: Callable[[], T | None],
    *,
    seconds: float = DEADLINE_SECONDS,
    explain: Callable[[], object] = lambda: "",
) -> T:
    """``probe()``'s first result that is not None, tried until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}: {explain()}")
        time.sleep(0.25)


class Prometheus:
    """The HTTP API of one running Prometheus."""

    def __init__(self, base: str) -> None:
        self.base = base

    def _get(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.base}{path}", params=params, timeout=5)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/v1/query", query=expr)["result"]
        return result

    def firing(self) -> set[tuple[str, str]]:
        """(alertname, circuit or '') of every firing alert."""
        return {
            (alert["labels"]["alertname"], alert["labels"].get("circuit", ""))
            for alert in self._get("/api/v1/alerts")["alerts"]
            if alert["state"] == "firing"
        }

    def alert_rules(self) -> list[dict[str, Any]]:
        return [
            rule
            for group in self._get("/api/v1/rules")["groups"]
            for rule in group["rules"]
            if rule["type"] == "alerting"
        ]


@pytest.fixture
def service_env(
    postgres_database: TestDatabase, redis_url: str, redis_prefix: str
) -> dict[str, str]:
    """Settings of a service on its own PostgreSQL database and Redis key prefix."""
    return {
        "BOOKINGGUARD_DATABASE_URL": postgres_database.url,
        "BOOKINGGUARD_REDIS_URL": redis_url,
        "BOOKINGGUARD_CIRCUIT_BREAKER__REDIS_KEY_PREFIX": f"{redis_prefix}cb:",
        "BOOKINGGUARD_MONITORING__LOCK_KEY_PREFIX": f"{redis_prefix}job:",
        "BOOKINGGUARD_MONITORING__INTERVAL_SECONDS": "2",
    }


def started(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)


def stopped(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(timeout=10)
    return process.returncode


@pytest.fixture
def serve(
    tmp_path: Path, service_env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``serve --workers 2`` on demo data, its alerts opened, with ``CIRCUIT`` forced open."""
    demo = run_cli("demo", "--days", "2", "--calls-per-day", "150", env=service_env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    # The scheduled check scans a recent window; one full scan opens the alerts of every
    # phantom booking the demo planted (exit 2: critical findings).
    check = run_cli("check", "--all", env=service_env)
    assert check.returncode == 2, check.stdout + check.stderr
    held_open = run_cli("breaker", "open", CIRCUIT, env=service_env)
    assert held_open.returncode == 0, held_open.stdout + held_open.stderr
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BOOKINGGUARD_")}
    environment.update(service_env)
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "bookingguard", "serve", "--port", str(port)]
    process = started([*command, "--workers", "2"], tmp_path / "serve.log", environment)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", process, 60)
        yield f"127.0.0.1:{port}", process
    finally:
        stopped(process)


@pytest.fixture
def prometheus(
    tmp_path: Path, serve: tuple[str, subprocess.Popen[bytes]]
) -> Iterator[tuple[Prometheus, list[str]]]:
    """Prometheus scraping ``serve`` every second with our rules (durations at 0s)."""
    binary = prometheus_binary()
    alerts = rules_without_durations(tmp_path / "rules.yml")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [
            {"job_name": "bookingguard", "static_configs": [{"targets": [serve[0]]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = started(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "prometheus.log",
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/-/ready", process, 30)
        yield Prometheus(f"http://127.0.0.1:{port}"), alerts
    finally:
        stopped(process)


def circuit_states(address: str, tries: int = 8) -> set[float | None]:
    """The circuit's state line as ``/metrics`` answers on ``tries`` fresh connections.

    A new connection each time lets either worker answer (the kernel spreads them).
    """
    pattern = re.compile(
        rf'^bookingguard_circuit_state\{{circuit="{re.escape(CIRCUIT)}"\}} (\S+)$', re.M
    )
    values: set[float | None] = set()
    for _ in range(tries):
        found = pattern.search(httpx.get(f"http://{address}/metrics", timeout=5).text)
        values.add(float(found.group(1)) if found else None)
    return values


def test_rules_and_dashboards_against_a_real_prometheus(
    prometheus: tuple[Prometheus, list[str]],
    serve: tuple[str, subprocess.Popen[bytes]],
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Every rule evaluates, alerts fire and clear, and every Grafana query returns a series.

    The circuit is reset through a separate CLI process (another replica of the shared
    Redis store); both workers' /metrics then report it closed and CircuitOpen clears.
    The monitor is stopped by stopping ``serve``: that proves MonitorNotRunning and
    TargetDown fire when the target is gone (the ``absent`` half); the half for a live
    service whose scheduler stopped is proved by ``promtool test rules``.
    """
    api, alerts = prometheus
    address, process = serve
    logs = tmp_path / "serve.log"

    def rules_all_ok() -> list[dict[str, Any]] | None:
        rules = api.alert_rules()
        broken = [
            (rule["name"], rule.get("lastError")) for rule in rules if rule["health"] == "err"
        ]
        assert broken == [], broken
        return rules if all(rule["health"] == "ok" for rule in rules) else None

    rules = poll("every alert rule evaluated", rules_all_ok)
    assert sorted(rule["name"] for rule in rules) == sorted(alerts)

    def fired(*wanted: tuple[str, str]) -> Callable[[], bool | None]:
        return lambda: True if set(wanted) <= api.firing() else None

    poll(
        "phantom bookings and the held-open circuit to fire",
        fired(("BookingGuardPhantomBookingsOpen", ""), ("BookingGuardCircuitOpen", CIRCUIT)),
        explain=lambda: (
            api.firing(),
            api.query("bookingguard_open_alerts > 0"),
            api.query("bookingguard_circuit_state"),
            logs.read_text()[-2000:],
        ),
    )
    assert circuit_states(address) == {2.0}

    for panel, expr in panel_queries():
        poll(f"a series for {panel}: {expr}", lambda expr=expr: api.query(expr) or None)

    poll(
        "the monitor to have run (MonitorNotRunning quiet)",
        lambda: True if ("BookingGuardMonitorNotRunning", "") not in api.firing() else None,
    )

    reset = run_cli("breaker", "reset", CIRCUIT, env=service_env)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert circuit_states(address) == {0.0}
    poll(
        "CircuitOpen to clear",
        lambda: True if ("BookingGuardCircuitOpen", CIRCUIT) not in api.firing() else None,
    )
    closed = f'max by (circuit) (bookingguard_circuit_state{{circuit="{CIRCUIT}"}}) == 0'
    poll("Prometheus to hold the circuit closed", lambda: api.query(closed) or None)

    assert stopped(process) == 0, logs.read_text()[-3000:]
    poll(
        "MonitorNotRunning and TargetDown once serve is stopped",
        fired(("BookingGuardMonitorNotRunning", ""), ("BookingGuardTargetDown", "")),
    )
