"""Settings: defaults from DESIGN.md, environment and TOML, clear errors that hide secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bookingguard.errors import ConfigurationError
from bookingguard.settings import Settings, load_settings, mask_url


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("BOOKINGGUARD_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_documented_ones() -> None:
    """Every default of DESIGN.md's configuration table."""
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
