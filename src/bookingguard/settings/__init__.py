"""Configuration: one pydantic-settings ``Settings`` read from the environment and a TOML file.

Every key has its default in ``model.py`` and nowhere else (the README's table lists them);
``loading.py`` reads them and names every bad or unknown key.
Nested sections use ``__`` in the environment
(``BOOKINGGUARD_CIRCUIT_BREAKER__COOLDOWN_SECONDS=30``). A TOML file is read when
``BOOKINGGUARD_CONFIG`` (or the CLI's ``--config``) names one; the environment wins
over the file.
"""

from bookingguard.settings.loading import load_settings
from bookingguard.settings.model import (
    CONFIG_ENV,
    ENV_PREFIX,
    NOT_SETTINGS,
    AlertSettings,
    ApiSettings,
    CalcomSettings,
    CircuitBreakerSettings,
    LoggingSettings,
    MonitoringSettings,
    RetellSettings,
    Settings,
    SpoolSettings,
    ValidationSettings,
    default_dashboard_url,
    mask_url,
)

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
    "load_settings",
    "mask_url",
]
