"""Alert partition upkeep on PostgreSQL (what the daily job runs)."""

from __future__ import annotations

from datetime import date

from bookingguard.monitoring.admin import ensure_partitions
from tests.conftest import TestDatabase
from tests.integration.monitoring.helpers import scalar


def test_partitions_are_created_ahead(postgres_database: TestDatabase) -> None:
    """Upkeep creates the months ahead once; a second call creates nothing."""
    with postgres_database.sessions.begin() as session:
        created = ensure_partitions(session, today=date(2031, 1, 15), months=2)
    with postgres_database.sessions.begin() as session:
        again = ensure_partitions(session, today=date(2031, 1, 15), months=2)
    assert (created, again) == (2, 0)
    assert (
        scalar(
            postgres_database,
            "SELECT count(*) FROM pg_class WHERE relname = 'data_consistency_alerts_2031_02'",
        )
        == 1
    )
