"""The wall clock services are given by default: one definition, imported by every layer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "utc_now"]

#: What services take as ``clock``: a function returning an aware datetime.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, as an aware UTC datetime (what services are given as ``clock``)."""
    return datetime.now(UTC)
