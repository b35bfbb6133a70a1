"""Settings: the README table's defaults, environment and TOML, clear errors that hide secrets."""

from __future__ import annotations

import socket
from datetime import time
from pathlib import Path

import pytest

from bookingguard.errors import ConfigurationError
from bookingguard.settings import Settings, default_dashboard_url, load_settings, mask_url
from bookingguard.urls import ClusterUrl, parse_cluster_url


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("BOOKINGGUARD_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_documented_ones() -> None:
    """Every default of the README's configuration table."""
    s = Settings()
    assert s.database_url == "sqlite:///./bookingguard.db"
    assert s.redis_url is None
    assert (s.validation.max_appointment_age_seconds, s.validation.max_retry_attempts) == (300, 3)
    assert s.validation.base_delay_seconds == 1
    cb = s.circuit_breaker
    assert (cb.failure_threshold, cb.cooldown_seconds, cb.success_threshold) == (3, 30, 2)
    assert cb.timeout_seconds == 10
    m = s.monitoring
    assert (m.recent_hours, m.interval_seconds, m.report_days) == (1, 60, 1)
    assert (m.alert_throttle_minutes, m.retention_days) == (5, 90)
    assert s.api.rate_limit == "60/minute"
    assert s.calcom.base_url == "https://api.cal.com/v2"


def test_nested_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """BOOKINGGUARD_SECTION__KEY sets nested values."""
    monkeypatch.setenv("BOOKINGGUARD_CIRCUIT_BREAKER__COOLDOWN_SECONDS", "45")
    monkeypatch.setenv("BOOKINGGUARD_ALERTS__EMAIL_TO", '["ops@example.com"]')
    monkeypatch.setenv("BOOKINGGUARD_CALCOM__API_KEY", "cal_live_secret")
    s = load_settings()
    assert s.circuit_breaker.cooldown_seconds == 45
    assert s.alerts.email_to == ["ops@example.com"]
    assert s.calcom.api_key is not None
    assert s.calcom.api_key.get_secret_value() == "cal_live_secret"
    assert "cal_live_secret" not in repr(s)


def test_toml_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TOML file supplies values; the environment overrides it."""
    config = tmp_path / "bookingguard.toml"
    config.write_text(
        "[monitoring]\nretention_days = 30\ninterval_seconds = 15\n"
        "[circuit_breaker]\nfailure_threshold = 5\n"
    )
    monkeypatch.setenv("BOOKINGGUARD_MONITORING__INTERVAL_SECONDS", "20")
    s = load_settings(config)
    assert s.monitoring.retention_days == 30
    assert s.monitoring.interval_seconds == 20
    assert s.circuit_breaker.failure_threshold == 5


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        (
            "BOOKINGGUARD_CIRCUIT_BREAKER__FAILURE_THRESHOLD",
            "-1",
            "circuit_breaker.failure_threshold",
        ),
        ("BOOKINGGUARD_DATABASE_URL", "mysql://db/x", "database_url"),
        ("BOOKINGGUARD_DATABASE_URL", "not a url", "database_url"),
        ("BOOKINGGUARD_REDIS_URL", "http://cache", "redis_url"),
        ("BOOKINGGUARD_REDIS_URL", "redis+cluster://h1:7000,h2:7001/0", "redis_url"),
        ("BOOKINGGUARD_REDIS_URL", "redis+cluster://h1:70000", "redis_url"),
        ("BOOKINGGUARD_REDIS_URL", "redis+cluster://h1:7000,:7001", "redis_url"),
        ("BOOKINGGUARD_API__RATE_LIMIT", "lots", "api.rate_limit"),
        ("BOOKINGGUARD_MONITORING__INTERVAL_SECONDS", "soon", "monitoring.interval_seconds"),
    ],
)
def test_bad_value_names_the_key(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, key: str
) -> None:
    """A bad value raises ConfigurationError naming the dotted key and the variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert caught.value.key == key
    assert name in caught.value.message


def test_error_never_echoes_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rejected URL carrying a password is not repeated in the message."""
    monkeypatch.setenv("BOOKINGGUARD_DATABASE_URL", "mysql://user:hunter2@db/x")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "hunter2" not in caught.value.message


def test_cluster_url_error_never_echoes_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rejected redis+cluster URL's password is not repeated in the message."""
    monkeypatch.setenv("BOOKINGGUARD_REDIS_URL", "redis+cluster://app:hunter2@h1:7000/1")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "hunter2" not in caught.value.message


def test_a_redis_cluster_url_names_its_nodes_and_credentials() -> None:
    """redis+cluster:// lists nodes (6379 when no port, IPv6 in brackets) and shared credentials."""
    url = "redis+cluster://app:s%40cret@10.0.0.1:7000,[::1]:7001,cache"
    assert Settings(redis_url=url).redis_url == url
    assert parse_cluster_url(url) == ClusterUrl(
        nodes=(("10.0.0.1", 7000), ("::1", 7001), ("cache", 6379)),
        username="app",
        password="s@cret",
    )
    assert parse_cluster_url("redis://cache:6379/0") is None


def test_postgres_url_gets_the_psycopg_driver() -> None:
    """postgresql:// and postgres:// URLs are normalised to psycopg 3."""
    s = Settings(database_url="postgres://u:p@db.internal:5432/bg")
    assert s.database_url.startswith("postgresql+psycopg://u:p@db.internal")


def test_mask_url_hides_the_password() -> None:
    """Masked URLs keep the user and host, never the password."""
    masked = mask_url("postgresql+psycopg://bg:s3cret@db:5432/bg")
    assert "s3cret" not in masked
    assert masked == "postgresql+psycopg://bg:***@db:5432/bg"


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    """Pointing at a config file that does not exist names the 'config' key."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(tmp_path / "absent.toml")
    assert caught.value.key == "config"


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("BOOKINGGUARD_API__TOKENS", "[abc]", "api.tokens"),
        ("BOOKINGGUARD_ALERTS__EMAIL_TO", "ops@example.com", "alerts.email_to"),
        ("BOOKINGGUARD_CIRCUIT_BREAKER__OVERRIDES", "{cal", "circuit_breaker.overrides"),
        ("BOOKINGGUARD_API", "{tokens", "api"),
    ],
)
def test_malformed_json_names_the_whole_key(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, key: str
) -> None:
    """Bad JSON in a list, mapping or section variable names its dotted key and variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert caught.value.key == key
    assert f"{key} ({name}): not valid JSON" in caught.value.message
    assert value not in caught.value.message


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("BOOKINGGUARD_DATABSE_URL", "databse_url"),
        ("BOOKINGGUARD_API__TOKEN", "api.token"),
        ("BOOKINGGUARD_MONITORING__INTERVAL", "monitoring.interval"),
        ("BOOKINGGUARD_API__PORT__NUMBER", "api.port.number"),
    ],
)
def test_unknown_environment_variable_is_an_error(
    monkeypatch: pytest.MonkeyPatch, name: str, key: str
) -> None:
    """A BOOKINGGUARD_ variable that names no setting, at any level, is refused by name."""
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert caught.value.key == key
    assert f"{key} ({name}): unknown setting" in caught.value.message


def test_variables_that_are_not_settings_are_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The config file's variable and serve's login secret are not taken for settings."""
    config = tmp_path / "bookingguard.toml"
    config.write_text("[api]\nport = 8100\n")
    monkeypatch.setenv("BOOKINGGUARD_CONFIG", str(config))
    monkeypatch.setenv("BOOKINGGUARD_SERVE_LOGIN_SECRET", "x")
    monkeypatch.setenv("BOOKINGGUARD_CIRCUIT_BREAKER__OVERRIDES", '{"a:": {"cooldown_seconds": 5}}')
    assert load_settings().api.port == 8100


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('databse_url = "sqlite:///x.db"\n', "databse_url"),
        ("[monitoring]\nintervall_seconds = 5\n", "monitoring.intervall_seconds"),
        ("[monitor]\ninterval_seconds = 5\n", "monitor"),
    ],
)
def test_unknown_toml_key_is_an_error(tmp_path: Path, toml: str, key: str) -> None:
    """A misspelt key in the TOML file, top level or in a section, is refused by name."""
    config = tmp_path / "bookingguard.toml"
    config.write_text(toml)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config)
    assert caught.value.key == key
    assert f"{key} (" in caught.value.message
    assert "unknown setting" in caught.value.message


def test_logging_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """logging.level (any case) and logging.format come from the environment."""
    assert (Settings().logging.level, Settings().logging.format) == ("INFO", "auto")
    monkeypatch.setenv("BOOKINGGUARD_LOGGING__LEVEL", "debug")
    monkeypatch.setenv("BOOKINGGUARD_LOGGING__FORMAT", "console")
    s = load_settings()
    assert (s.logging.level, s.logging.format) == ("DEBUG", "console")
    monkeypatch.setenv("BOOKINGGUARD_LOGGING__FORMAT", "xml")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert caught.value.key == "logging.format"


def test_report_time_is_a_utc_time_of_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """monitoring.report_time reads "HH:MM"; a bad time or one with an offset is refused."""
    assert Settings().monitoring.report_time == time(6, 0)
    monkeypatch.setenv("BOOKINGGUARD_MONITORING__REPORT_TIME", "23:45")
    assert load_settings().monitoring.report_time == time(23, 45)
    for bad in ("25:00", "06:00+02:00"):
        monkeypatch.setenv("BOOKINGGUARD_MONITORING__REPORT_TIME", bad)
        with pytest.raises(ConfigurationError) as caught:
            load_settings()
        assert caught.value.key == "monitoring.report_time"


def test_dashboard_url_follows_the_api_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, monitoring.dashboard_url is the API's host and port; set, it is kept."""
    assert Settings().monitoring.dashboard_url == "http://127.0.0.1:8000/"
    monkeypatch.setenv("BOOKINGGUARD_API__HOST", "bg.internal")
    monkeypatch.setenv("BOOKINGGUARD_API__PORT", "9100")
    assert load_settings().monitoring.dashboard_url == "http://bg.internal:9100/"
    monkeypatch.setenv("BOOKINGGUARD_API__HOST", "::1")
    assert load_settings().monitoring.dashboard_url == "http://[::1]:9100/"
    monkeypatch.setenv("BOOKINGGUARD_MONITORING__DASHBOARD_URL", "https://guard.example.com/")
    assert load_settings().monitoring.dashboard_url == "https://guard.example.com/"


def test_wildcard_address_links_to_this_host() -> None:
    """Bound to every address, the dashboard link names this machine, not 0.0.0.0."""
    every_address = "0.0.0.0"  # noqa: S104 - a setting's value, nothing is bound
    url = default_dashboard_url(every_address, 8000)
    assert url == f"http://{socket.getfqdn()}:8000/"
    assert every_address not in url


def test_metrics_token_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """api.metrics_token_required defaults to false and reads from the environment."""
    assert Settings().api.metrics_token_required is False
    monkeypatch.setenv("BOOKINGGUARD_API__METRICS_TOKEN_REQUIRED", "true")
    assert load_settings().api.metrics_token_required is True
