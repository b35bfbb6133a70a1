"""Composition root: builds engines, clients, stores and services from ``Settings``.

Nothing is built at import time; the CLI and the HTTP app call these functions.
"""

from __future__ import annotations

from sqlalchemy import Engine

from bookingguard.db.engine import make_engine
from bookingguard.settings import Settings

__all__ = ["build_engine"]


def build_engine(settings: Settings) -> Engine:
    """The database engine for the configured URL."""
    return make_engine(settings.database_url)
