"""Domain exceptions with stable codes; only ``api`` maps them to HTTP, ``cli`` to exit codes."""

from __future__ import annotations

__all__ = [
    "BookingGuardError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "MigrationError",
]


class BookingGuardError(Exception):
    """Base of every error bookingguard raises on purpose; ``code`` is stable."""

    code = "bookingguard_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(BookingGuardError):
    """A configuration value is missing or invalid; ``key`` names it."""

    code = "configuration_error"

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class DatabaseUnavailableError(BookingGuardError):
    """The database did not answer; the message carries the masked URL."""

    code = "database_unavailable"


class MigrationError(BookingGuardError):
    """A schema migration failed; the database stays at the revision it had."""

    code = "migration_failed"
