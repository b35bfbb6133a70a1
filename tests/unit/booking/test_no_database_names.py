"""The booking package never names a database: what differs per database lives in ``db/``."""

from __future__ import annotations

import re
from pathlib import Path

import bookingguard.booking

BOOKING = Path(bookingguard.booking.__file__).parent
DATABASE_NAMES = re.compile(r"postgres|sqlite|dialect|psycopg|async_pg", re.IGNORECASE)


def test_booking_sources_name_no_database() -> None:
    """No booking module (code, comments, docstrings) names a database, a driver or a dialect."""
    sources = sorted(BOOKING.rglob("*.py"))
    assert len(sources) > 5
    hits = [
        f"{path.relative_to(BOOKING)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if DATABASE_NAMES.search(line)
    ]
    assert hits == []


def test_booking_sources_import_no_raw_sql() -> None:
    """Booking modules build statements through ``db/``, never as raw SQL text."""
    raw = re.compile(r"\b(text|exec_driver_sql)\(|from sqlalchemy import .*\btext\b")
    hits = [
        f"{path.relative_to(BOOKING)}:{number}"
        for path in sorted(BOOKING.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if raw.search(line)
    ]
    assert hits == []
