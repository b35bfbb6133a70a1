"""The package's public names: every one resolves, and importing the package builds nothing."""

from __future__ import annotations

import subprocess
import sys

import bookingguard
from bookingguard.booking.validation import PostBookingValidator, ValidationResult
from bookingguard.resilience import CircuitBreaker


def test_every_public_name_resolves() -> None:
    """Each name in bookingguard.__all__ is an attribute of the package."""
    for name in bookingguard.__all__:
        assert getattr(bookingguard, name) is not None, name


def test_public_names_are_the_contract_objects() -> None:
    """The top-level names are the same objects the README names in their modules."""
    assert bookingguard.CircuitBreaker is CircuitBreaker
    assert bookingguard.PostBookingValidator is PostBookingValidator
    assert bookingguard.ValidationResult is ValidationResult
    assert callable(CircuitBreaker.from_settings)


def test_unknown_name_is_an_attribute_error() -> None:
    """A name outside __all__ is not silently provided."""
    assert not hasattr(bookingguard, "create_engine")


def test_import_is_cheap() -> None:
    """import bookingguard loads neither FastAPI nor SQLAlchemy's ORM nor redis."""
    code = (
        "import sys, bookingguard; "
        "print(sorted(m for m in ('fastapi', 'sqlalchemy.orm', 'redis') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
