"""The settings' shape: every section, every key and its one default (``Settings``)."""

from __future__ import annotations

import os
import socket
from datetime import time
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bookingguard.token_format import parse_static_token
from bookingguard.urls import mask_url, parse_cluster_url

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "NOT_SETTINGS",
    "AlertSettings",
    "ApiSettings",
    "CalcomSettings",
    "CircuitBreakerSettings",
    "LoggingSettings",
    "MonitoringSettings",
    "RetellSettings",
    "Settings",
    "SpoolSettings",
    "ValidationSettings",
    "default_dashboard_url",
    "mask_url",
]

ENV_PREFIX = "BOOKINGGUARD_"
CONFIG_ENV = "BOOKINGGUARD_CONFIG"
#: Variables with the prefix that are not settings: the config file, the login secret
#: ``serve`` hands its workers, and the test suite's PostgreSQL and Redis.
NOT_SETTINGS = frozenset(
    {
        CONFIG_ENV,
        "BOOKINGGUARD_SERVE_LOGIN_SECRET",
        "BOOKINGGUARD_TEST_POSTGRES_URL",
        "BOOKINGGUARD_TEST_REDIS_URL",
    }
)

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValidationSettings(_Section):
    """Post-booking validation, the booking retry and the booking's claim on its key."""

    max_appointment_age_seconds: PositiveInt = 300
    max_retry_attempts: PositiveInt = 3
    base_delay_seconds: NonNegativeFloat = 1.0
    retry_budget_seconds: PositiveFloat = 30.0
    #: How long a request for a key another request has claimed waits for its outcome.
    claim_wait_seconds: PositiveFloat = 3.0
    #: A claim unchanged for this long lost its owner (it crashed): the next request for
    #: the key looks the booking up at Cal.com and takes the claim over. Longer than the
    #: longest a create can take (the retry budget, plus a request's timeouts).
    claim_stale_seconds: PositiveFloat = 120.0

    @model_validator(mode="after")
    def _stale_after_the_retries(self) -> ValidationSettings:
        if self.claim_stale_seconds <= self.retry_budget_seconds:
            raise ValueError(
                "claim_stale_seconds must be longer than retry_budget_seconds"
                f" ({self.claim_stale_seconds} <= {self.retry_budget_seconds})"
            )
        return self


class CircuitBreakerSettings(_Section):
    """Circuit breaker defaults; ``overrides`` maps a key prefix to changed values."""

    failure_threshold: PositiveInt = 3
    cooldown_seconds: PositiveFloat = 30.0
    success_threshold: PositiveInt = 2
    timeout_seconds: PositiveFloat = 10.0
    failure_rate_threshold: Annotated[float, Field(gt=0, le=100)] | None = None
    window_seconds: PositiveInt = 60
    minimum_calls: PositiveInt = 5
    slow_call_seconds: PositiveFloat | None = None
    slow_call_rate_threshold: Annotated[float, Field(gt=0, le=100)] = 50.0
    redis_timeout_seconds: Annotated[float, Field(gt=0, le=0.1)] = 0.1
    #: how long the store chain leaves an unavailable store alone before asking it again
    store_recheck_seconds: PositiveFloat = 1.0
    #: prefix of the breaker's Redis keys (each circuit's key sits in a {hash tag} after it)
    redis_key_prefix: str = "bookingguard:cb:"
    overrides: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _check_overrides(
        cls, value: dict[str, dict[str, float | int | None]]
    ) -> dict[str, dict[str, float | int | None]]:
        not_per_circuit = {
            "overrides",
            "redis_timeout_seconds",
            "store_recheck_seconds",
            "redis_key_prefix",
        }
        allowed = set(cls.model_fields) - not_per_circuit
        for prefix, values in value.items():
            unknown = sorted(set(values) - allowed)
            if unknown:
                raise ValueError(f"prefix {prefix!r}: unknown keys {unknown}")
        return value


class MonitoringSettings(_Section):
    """The scheduled consistency check, alerting and retention."""

    recent_hours: PositiveFloat = 1.0
    interval_seconds: PositiveInt = 60
    report_days: PositiveInt = 1
    alert_throttle_minutes: NonNegativeFloat = 5.0
    repeat_interval_hours: PositiveFloat = 4.0
    retention_days: PositiveInt = 90
    sample_size: PositiveInt = 10
    reconcile_grace_minutes: NonNegativeFloat = 10.0
    #: The daily report's time of day, in UTC ("06:00").
    report_time: time = time(6, 0)
    #: The dashboard notifications link to; empty: ``default_dashboard_url(api.host, api.port)``.
    dashboard_url: str = ""
    #: Redis key prefix of the scheduler's job leases (one replica per job and interval).
    lock_key_prefix: str = "bookingguard:job:"
    #: Directory of the lease files used when no Redis is configured (default: a temp dir).
    lock_dir: str | None = None
    #: How long a claimed outbox row stays with a worker that may have died mid-send.
    delivery_lease_seconds: PositiveFloat = 60.0
    #: Width of the time buckets reconciliation compares with Cal.com.
    reconcile_bucket_hours: PositiveFloat = 6.0

    @field_validator("report_time")
    @classmethod
    def _check_report_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("a time of day in UTC, without an offset ('06:00')")
        return value


class ApiSettings(_Section):
    """HTTP service: bind address, tokens, rate limits.

    ``tokens`` entries are ``name:scope:secret`` (scope ``read`` or ``operate``), given
    in the environment as a JSON list: ``BOOKINGGUARD_API__TOKENS='["ci:read:…"]'``.
    """

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    rate_limit: str = "60/minute"
    tokens: list[SecretStr] = Field(default_factory=list)
    #: ``/metrics`` answers only a bearer token of scope ``read`` (or ``operate``).
    metrics_token_required: bool = False
    #: Largest request body of the API and the dashboard, in bytes; a larger one is 413.
    max_body_bytes: PositiveInt = 64 * 1024
    #: Largest body of a webhook or an agent function call, in bytes; a larger one is 413.
    max_webhook_body_bytes: PositiveInt = 1024 * 1024
    #: How long a dashboard session lasts after signing in.
    session_ttl_seconds: PositiveInt = 12 * 3600
    #: Sign-in attempts per client at ``/login``.
    login_rate_limit: str = "10/minute"
    #: Webhook and agent-function requests with a bad signature, per client.
    signature_failure_rate_limit: str = "20/minute"

    @field_validator("rate_limit", "login_rate_limit", "signature_failure_rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit such as '60/minute': {value!r}") from exc
        return value

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, value: list[SecretStr]) -> list[SecretStr]:
        for entry in value:
            parse_static_token(entry.get_secret_value())
        return value


class CalcomSettings(_Section):
    """Cal.com v2 API access."""

    api_key: SecretStr | None = None
    base_url: str = "https://api.cal.com/v2"
    webhook_secret: SecretStr | None = None
    #: ``cal-api-version`` of the bookings endpoints.
    api_version: str = "2024-08-13"
    #: ``cal-api-version`` of ``GET /v2/slots``.
    slots_api_version: str = "2024-09-04"
    #: ``cal-api-version`` of ``GET /v2/event-types/{id}``.
    event_types_api_version: str = "2024-06-14"
    #: How long a fetched event type is used before it is fetched again.
    event_type_cache_seconds: NonNegativeFloat = 300.0
    connect_timeout_seconds: PositiveFloat = 3.0
    read_timeout_seconds: PositiveFloat = 8.0
    #: A webhook whose ``createdAt`` is further than this from now is refused (401).
    webhook_tolerance_seconds: PositiveInt = 300

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")


class RetellSettings(_Section):
    """Retell AI: the API key signs webhooks and function calls."""

    api_key: SecretStr | None = None
    signature_tolerance_seconds: PositiveInt = 300
    outcome_mapping: dict[str, str] = Field(default_factory=dict)
    #: The key of ``call_analysis.custom_analysis_data`` holding the call's outcome.
    outcome_field: str = "session_outcome"
    #: Retell ``agent_id`` → the Cal.com event type ids its functions may use, the first
    #: being the one used when the model names none.
    agent_event_types: dict[str, list[Annotated[int, Field(gt=0, le=2**31 - 1)]]] = Field(
        default_factory=dict
    )
    #: The event type of agents (and ``args_at_root`` tools) not listed above.
    default_event_type_id: Annotated[int, Field(gt=0, le=2**31 - 1)] | None = None


class AlertSettings(_Section):
    """Notification channels: Slack incoming webhook, SMTP e-mail, the log."""

    slack_webhook_url: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    email_from: str = "bookingguard@localhost"
    email_to: list[str] = Field(default_factory=list)


class LoggingSettings(_Section):
    """Log level and format: ``auto`` is readable on a terminal and JSON otherwise."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class SpoolSettings(_Section):
    """The local spool of failed-booking records the database could not take.

    A relative ``path`` is taken from the working directory, beside the embedded
    database's default file (``/var/lib/bookingguard`` under the systemd unit).
    """

    path: str = "bookingguard-spool.db"
    #: How often ``serve`` replays the spool into the database.
    replay_interval_seconds: PositiveFloat = 10.0


class Settings(BaseSettings):
    """All of bookingguard's configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    #: A TOML file chosen in code (``load_settings(path)``); else ``BOOKINGGUARD_CONFIG``.
    toml_file: ClassVar[Path | None] = None

    database_url: str = "sqlite:///./bookingguard.db"
    #: ``redis://…`` for one server, ``redis+cluster://host:port,host:port`` for a Redis Cluster.
    redis_url: str | None = None
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    calcom: CalcomSettings = Field(default_factory=CalcomSettings)
    retell: RetellSettings = Field(default_factory=RetellSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(
                "not a database URL (expected sqlite:///PATH or postgresql://…)"
            ) from exc
        backend = url.get_backend_name()
        if backend == "sqlite":
            return value
        if backend in ("postgresql", "postgres"):
            if not url.host and not url.query.get("host"):
                raise ValueError("a PostgreSQL URL needs a host")
            return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        raise ValueError(
            f"unsupported database scheme {url.drivername!r}: use sqlite or postgresql"
        )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if parse_cluster_url(value) is not None:
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss://, unix:// or redis+cluster://")
        return value

    @model_validator(mode="after")
    def _default_dashboard_url(self) -> Settings:
        if not self.monitoring.dashboard_url:
            url = default_dashboard_url(self.api.host, self.api.port)
            monitoring = self.monitoring.model_copy(update={"dashboard_url": url})
            object.__setattr__(self, "monitoring", monitoring)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = cls.toml_file or os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def masked_database_url(self) -> str:
        """The database URL with any password hidden, safe for logs and errors."""
        return mask_url(self.database_url)


def default_dashboard_url(host: str, port: int) -> str:
    """The dashboard's URL on the API's address; a wildcard address becomes this host's name."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - compared, not bound
        host = socket.getfqdn()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
