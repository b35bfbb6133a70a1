"""The operations files under deploy/: rules, dashboards, systemd unit and example env."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bookingguard.settings import load_settings
from tests.conftest import service_unavailable

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
README = DEPLOY.parent / "README.md"
DASHBOARDS = sorted((DEPLOY / "grafana").glob("bookingguard-*.json"))
PROVISIONING = DEPLOY / "grafana" / "provisioning"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
METRIC = re.compile(r"\bbookingguard_[a-z_]+\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def declared_metrics() -> dict[str, str]:
    """Name → type from deploy/metrics.txt, the one list of metric names."""
    metrics = {}
    for line in (DEPLOY / "metrics.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, kind, *_ = line.split()
            metrics[name] = kind
    return metrics


def undeclared(expr: str) -> set[str]:
    metrics = declared_metrics()
    missing = set()
    for name in METRIC.findall(expr):
        base = name
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in metrics:
                base = name[: -len(suffix)]
        if base not in metrics:
            missing.add(name)
    return missing


def rule_exprs() -> list[tuple[str, str]]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "bookingguard-rules.yml").read_text())
    return [
        (rule["alert"], rule["expr"]) for group in document["groups"] for rule in group["rules"]
    ]


def test_alert_rules_name_only_declared_metrics() -> None:
    """Each alert has severity and summary, and uses only metrics from deploy/metrics.txt."""
    document = yaml.safe_load((DEPLOY / "prometheus" / "bookingguard-rules.yml").read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {
        "BookingGuardPhantomBookingsFound",
        "BookingGuardCircuitOpen",
        "BookingGuardOutboxBacklogGrowing",
        "BookingGuardNotificationsFailing",
    } <= names
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
    for alert, expr in rule_exprs():
        assert undeclared(expr) == set(), alert
    circuit_open = next(rule for rule in rules if rule["alert"] == "BookingGuardCircuitOpen")
    assert circuit_open["for"] == "5m"


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    """promtool accepts the rules and their unit tests pass (circuit open > 5 min, phantoms)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        service_unavailable("promtool", "install Debian's prometheus package")
        return
    rules = DEPLOY / "prometheus"
    for args in (
        ["check", "rules", str(rules / "bookingguard-rules.yml")],
        ["test", "rules", str(rules / "bookingguard-rules.test.yml")],
    ):
        result = subprocess.run(
            [promtool, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_grafana_dashboard_queries_declared_metrics(path: Path) -> None:
    """Each Grafana dashboard is valid JSON with unique panel ids and only declared metrics."""
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"].startswith("bookingguard-")
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels) >= 4
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert METRIC.search(target["expr"]), panel["title"]
            assert undeclared(target["expr"]) == set(), panel["title"]


def test_every_dashboard_file_is_a_provisioned_dashboard() -> None:
    """The dashboards in deploy/grafana/ are the three named ones, and JSON files only."""
    assert [path.name for path in DASHBOARDS] == [
        "bookingguard-circuit-breakers.json",
        "bookingguard-consistency.json",
        "bookingguard-validation.json",
    ]
    assert sorted(path.name for path in (DEPLOY / "grafana").glob("*.json")) == [
        path.name for path in DASHBOARDS
    ]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboard_panels_query_the_datasource_variable(path: Path) -> None:
    """A 'datasource' variable (Prometheus type) feeds every panel and query; no __inputs."""
    dashboard = json.loads(path.read_text())
    assert "__inputs" not in dashboard
    assert "DS_PROMETHEUS" not in path.read_text()
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE_REF) == DATASOURCE_REF, panel["title"]


def test_datasource_provisioning_declares_one_prometheus() -> None:
    """provisioning/datasources/bookingguard.yml is Grafana's format with one Prometheus."""
    document = yaml.safe_load((PROVISIONING / "datasources" / "bookingguard.yml").read_text())
    assert document["apiVersion"] == 1
    [datasource] = document["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["access"] == "proxy"
    assert datasource["url"].startswith("http")
    assert datasource["name"]
    assert datasource["uid"]


def test_dashboard_provider_loads_the_folder_the_dashboards_are_installed_in() -> None:
    """The file provider reads the folder that the provider and README copy the dashboards to."""
    text = (PROVISIONING / "dashboards" / "bookingguard.yml").read_text()
    document = yaml.safe_load(text)
    assert document["apiVersion"] == 1
    [provider] = document["providers"]
    assert provider["type"] == "file"
    folder = provider["options"]["path"]
    assert folder.startswith("/")
    install = f"install -D -m 0644 -t {folder} deploy/grafana/bookingguard-*.json"
    assert install in text
    assert install in README.read_text()


def test_example_env_file_is_a_valid_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key of bookingguard.env.example is a real setting and its value validates."""
    for line in (DEPLOY / "bookingguard.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.redis_url == "redis://redis.internal:6379/0"
    assert settings.alerts.email_to == ["oncall@example.com"]
    assert len(settings.api.tokens) == 1
    known = set(_env_names(settings.model_dump()))
    for line in (DEPLOY / "bookingguard.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            assert line.split("=", 1)[0] in known, line


def _env_names(values: dict[str, object], prefix: str = "BOOKINGGUARD_") -> list[str]:
    names = []
    for key, value in values.items():
        name = prefix + key.upper()
        names.append(name)
        if isinstance(value, dict):
            names.extend(_env_names(value, name + "__"))
    return names


def read_unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / name)
    return unit


def unit_directives(name: str) -> dict[str, list[str]]:
    """``[Service]`` directive → its values in order (SystemCallFilter, say, repeats)."""
    directives: dict[str, list[str]] = {}
    section = None
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, value = line.split("=", 1)
            directives.setdefault(key, []).append(value)
    return directives


UNITS = ["bookingguard.service", "bookingguard-migrate.service"]

#: The sandbox that systemd-analyze rates 1.1 ("OK"); the score stays <= 2.5 while these hold.
HARDENING = {
    "NoNewPrivileges": ["yes"],
    "CapabilityBoundingSet": [""],
    "AmbientCapabilities": [""],
    "ProtectSystem": ["strict"],
    "ProtectHome": ["yes"],
    "PrivateTmp": ["yes"],
    "PrivateDevices": ["yes"],
    "PrivateMounts": ["yes"],
    "PrivateUsers": ["yes"],
    "ProtectKernelTunables": ["yes"],
    "ProtectKernelModules": ["yes"],
    "ProtectKernelLogs": ["yes"],
    "ProtectControlGroups": ["yes"],
    "ProtectClock": ["yes"],
    "ProtectHostname": ["yes"],
    "ProtectProc": ["invisible"],
    "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
    "RestrictNamespaces": ["yes"],
    "RestrictRealtime": ["yes"],
    "RestrictSUIDSGID": ["yes"],
    "RemoveIPC": ["yes"],
    "LockPersonality": ["yes"],
    "MemoryDenyWriteExecute": ["yes"],
    "SystemCallArchitectures": ["native"],
    "SystemCallFilter": ["@system-service", "~@privileged @resources"],
    "UMask": ["0077"],
}


def test_systemd_unit_runs_serve_with_the_env_file() -> None:
    """The unit starts `bookingguard serve` with the env file and does not retry exit code 2."""
    unit = read_unit("bookingguard.service")
    service = unit["Service"]
    assert service["ExecStart"].endswith("bookingguard serve")
    assert service["EnvironmentFile"] == "/etc/bookingguard/bookingguard.env"
    assert service["RestartPreventExitStatus"] == "2"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("name", UNITS)
def test_systemd_units_keep_the_hardening_directives(name: str) -> None:
    """Both units carry every sandbox directive the security score relies on, unweakened."""
    directives = unit_directives(name)
    assert {key: directives.get(key) for key in HARDENING} == HARDENING
    assert directives["ReadWritePaths"] == ["/var/lib/bookingguard"]


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_rates_the_units_at_most_2_5(name: str) -> None:
    """systemd-analyze security (offline) rates each unit's exposure at 2.5 or lower."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed: the directives test stands in for it")
    result = subprocess.run(
        [analyze, "security", "--offline=true", str(DEPLOY / "systemd" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.5, result.stdout
