"""One Alembic history for both dialects: a single head, no drift, a clean round trip."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from bookingguard.db import migrate
from bookingguard.db.migrate import alembic_config
from bookingguard.errors import MigrationError
from tests.conftest import TestDatabase
from tests.support.interleave import Statement, interleave


def test_history_has_one_head(database: TestDatabase) -> None:
    """The migration history never forks."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config(database.engine)).get_heads()
    assert len(heads) == 1
    assert migrate.current_revision(database.engine) == heads[0]


def test_models_match_migrations(database: TestDatabase) -> None:
    """alembic check finds no difference between the models and the migrated schema."""
    migrate.check_drift(database.engine)


def test_downgrade_to_base_leaves_nothing_and_upgrade_restores(database: TestDatabase) -> None:
    """Down to base removes every table, trigger and function; up again gives the same schema."""
    before = sorted(inspect(database.engine).get_table_names())
    migrate.downgrade(database.engine, "base")
    database.engine.dispose()
    assert inspect(database.engine).get_table_names() == ["alembic_version"]
    with database.engine.connect() as connection:
        if database.dialect == "postgresql":
            leftovers = (
                connection.execute(
                    text(
                        "SELECT count(*) FROM pg_proc WHERE proname LIKE 'bookingguard%' "
                        "UNION ALL SELECT count(*) FROM pg_class WHERE relkind = 'S'"
                    )
                )
                .scalars()
                .all()
            )
            assert leftovers == [0, 0]
        else:
            triggers = connection.execute(
                text("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'")
            ).scalar_one()
            assert triggers == 0
    migrate.upgrade(database.engine)
    assert sorted(inspect(database.engine).get_table_names()) == before


def test_appointments_before_0005_are_agent_and_rejected_becomes_allowed(
    database: TestDatabase,
) -> None:
    """Rows from before revision 0005 get source 'agent'; 'rejected' is then a status, and
    going back down removes rejected rows with the column."""
    migrate.downgrade(database.engine, "0004")
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO appointments (status) VALUES ('booked')"))
    migrate.upgrade(database.engine)
    with database.engine.begin() as connection:
        assert connection.execute(text("SELECT source FROM appointments")).scalars().all() == [
            "agent"
        ]
        connection.execute(text("INSERT INTO appointments (status) VALUES ('rejected')"))
    migrate.downgrade(database.engine, "0004")
    with database.engine.begin() as connection:
        statuses = connection.execute(text("SELECT status FROM appointments")).scalars().all()
    assert statuses == ["booked"]
    migrate.upgrade(database.engine)


def _new_appointment_races_deletion_of_old(database: TestDatabase) -> bool:
    """A call's new appointment inserted while its old one is deleted; is the call booked?"""
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO calls (retell_call_id) VALUES ('race')"))
        call_id = connection.execute(text("SELECT max(id) FROM calls")).scalar_one()
        connection.execute(
            text("INSERT INTO appointments (call_id, status) VALUES (:c, 'booked')"), {"c": call_id}
        )
        old = connection.execute(text("SELECT max(id) FROM appointments")).scalar_one()
    interleave(
        database.engine,
        [
            Statement(
                "INSERT INTO appointments (call_id, status) VALUES (:c, 'booked')", {"c": call_id}
            )
        ],
        [Statement("DELETE FROM appointments WHERE id = :id", {"id": old})],
    )
    with database.engine.begin() as connection:
        booked = connection.execute(
            text("SELECT appointment_made FROM calls WHERE id = :c"), {"c": call_id}
        ).scalar_one()
        connection.execute(text("DELETE FROM calls"))
    return bool(booked)


def test_link_triggers_lock_calls_from_0007(database: TestDatabase) -> None:
    """Down at 0005 a call's new appointment racing its old one's deletion leaves the call
    unbooked on PostgreSQL (SQLite serialises writers); 0007's triggers keep it booked."""
    migrate.downgrade(database.engine, "0005")
    assert _new_appointment_races_deletion_of_old(database) is (database.dialect == "sqlite")
    migrate.upgrade(database.engine)
    assert _new_appointment_races_deletion_of_old(database) is True


def test_a_claim_is_a_status_from_0006_and_never_links_its_call(database: TestDatabase) -> None:
    """From revision 0006 'pending_creation' is a status that links no call (and 'booked'
    still does); going back down removes the claims with the status."""
    migrate.downgrade(database.engine, "0005")
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO calls (retell_call_id) VALUES ('c1')"))
    migrate.upgrade(database.engine)
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO appointments (call_id, status, idempotency_key)"
                " SELECT id, 'pending_creation', 'k1' FROM calls"
            )
        )
        linked = connection.execute(text("SELECT appointment_made FROM calls")).scalar_one()
    assert not linked
    migrate.downgrade(database.engine, "0005")
    with database.engine.begin() as connection:
        assert connection.execute(text("SELECT count(*) FROM appointments")).scalar_one() == 0
        connection.execute(
            text("INSERT INTO appointments (call_id, status) SELECT id, 'booked' FROM calls")
        )
        linked = connection.execute(text("SELECT appointment_made FROM calls")).scalar_one()
    assert linked
    migrate.upgrade(database.engine)


def test_failed_migration_leaves_previous_revision(database: TestDatabase) -> None:
    """A migration that fails midway rolls back whole; the database stays at base, table-free."""
    migrate.downgrade(database.engine, "base")
    with database.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE webhook_events (id INTEGER PRIMARY KEY)")
    with pytest.raises(MigrationError, match="left at revision base"):
        migrate.upgrade(database.engine)
    assert migrate.current_revision(database.engine) is None
    assert "calls" not in inspect(database.engine).get_table_names()
