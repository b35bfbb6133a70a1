"""Database-side guarantees 1-6 of DESIGN.md: the same observable result on both dialects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, select, text
from sqlalchemy.exc import IntegrityError

from bookingguard.db import ddl
from bookingguard.db.bulk import import_appointments, resync_call_links
from bookingguard.db.models import Appointment, Call, ConsistencyAlert
from tests.conftest import TestDatabase


def insert_call(connection: Connection, retell_call_id: str, **values: Any) -> int:
    columns = {"retell_call_id": retell_call_id, **values}
    names = ", ".join(columns)
    marks = ", ".join(f":{name}" for name in columns)
    connection.execute(text(f"INSERT INTO calls ({names}) VALUES ({marks})"), columns)
    return int(
        connection.execute(
            text("SELECT id FROM calls WHERE retell_call_id = :r"), {"r": retell_call_id}
        ).scalar_one()
    )


def call_row(connection: Connection, call_id: int) -> Any:
    return connection.execute(select(Call.__table__).where(Call.id == call_id)).one()


def alerts_for(connection: Connection, call_id: int) -> list[Any]:
    table = ConsistencyAlert.__table__
    return list(
        connection.execute(
            select(table).where(table.c.entity_type == "call", table.c.entity_id == call_id)
        ).all()
    )


def insert_appointment(connection: Connection, call_id: int | None, **values: Any) -> int:
    row = {"call_id": call_id, "status": "booked", **values}
    result = connection.execute(Appointment.__table__.insert().values(**row))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


@pytest.mark.parametrize("direction", [None, ""])
def test_call_without_direction_is_stored_inbound(
    database: TestDatabase, direction: str | None
) -> None:
    """A call inserted with a NULL or empty direction is stored as inbound."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, "r-dir", direction=direction)
        assert call_row(connection, call_id).direction == "inbound"


def test_explicit_direction_is_kept(database: TestDatabase) -> None:
    """An outbound call keeps its direction."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, "r-out", direction="outbound")
        assert call_row(connection, call_id).direction == "outbound"


def test_booked_outcome_without_flag_is_corrected_and_logged(database: TestDatabase) -> None:
    """outcome=appointment_booked with appointment_made=false stores made=true and logs an alert."""
    with database.engine.begin() as connection:
        call_id = insert_call(
            connection, "r-1", session_outcome="appointment_booked", appointment_made=False
        )
        row = call_row(connection, call_id)
        assert row.appointment_made is True
        assert row.session_outcome == "appointment_booked"
        alerts = alerts_for(connection, call_id)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.entity_id == call_id != 0
    assert alert.alert_type == "session_outcome_mismatch"
    assert alert.severity == "critical"
    assert alert.auto_corrected is True
    assert alert.metadata["corrected_field"] == "appointment_made"
    assert alert.metadata["retell_call_id"] == "r-1"


def test_flag_without_booked_outcome_is_corrected_on_update(database: TestDatabase) -> None:
    """An UPDATE setting appointment_made=true under another outcome is corrected and logged."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, "r-2", session_outcome="information_only")
        assert alerts_for(connection, call_id) == []
        connection.execute(
            text("UPDATE calls SET appointment_made = :made WHERE id = :id"),
            {"made": True, "id": call_id},
        )
        row = call_row(connection, call_id)
        assert (row.appointment_made, row.session_outcome) == (True, "appointment_booked")
        alerts = alerts_for(connection, call_id)
    assert [a.metadata["before"] for a in alerts] == ["information_only"]
    assert alerts[0].metadata["corrected_field"] == "session_outcome"


def test_consistent_call_writes_no_alert(database: TestDatabase) -> None:
    """A consistent write is stored as given and logs nothing."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, "r-3", session_outcome="voicemail")
        connection.execute(
            text("UPDATE calls SET call_status = 'ended' WHERE id = :id"), {"id": call_id}
        )
        assert alerts_for(connection, call_id) == []
        assert call_row(connection, call_id).appointment_made is False


def test_check_constraint_rejects_disagreeing_row_without_triggers(
    postgres_database: TestDatabase,
) -> None:
    """On PostgreSQL, with the outcome triggers off, the CHECK backstop rejects the row."""
    with postgres_database.engine.begin() as connection:
        ddl.set_triggers_enabled(connection, enabled=False, names=["outcome"])
    with (
        pytest.raises(IntegrityError, match="ck_calls_outcome_matches_flag"),
        postgres_database.engine.begin() as connection,
    ):
        insert_call(
            connection, "r-ck", session_outcome="appointment_booked", appointment_made=False
        )


def test_inserting_appointments_links_their_calls(database: TestDatabase) -> None:
    """A multi-row appointment insert links every call: flag, outcome, link status, linked_at."""
    with database.engine.begin() as connection:
        first = insert_call(connection, "r-a", session_outcome="information_only")
        second = insert_call(connection, "r-b")
        connection.execute(
            Appointment.__table__.insert(),
            [{"call_id": first, "status": "booked"}, {"call_id": second, "status": "confirmed"}],
        )
        for call_id in (first, second):
            row = call_row(connection, call_id)
            assert row.appointment_made is True
            assert row.session_outcome == "appointment_booked"
            assert row.appointment_link_status == "linked"
            assert row.appointment_linked_at is not None


def test_cancelled_appointment_insert_does_not_link(database: TestDatabase) -> None:
    """Inserting an already-cancelled appointment leaves the call unlinked."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, "r-c")
        insert_appointment(connection, call_id, status="cancelled")
        assert call_row(connection, call_id).appointment_made is False


def test_postgres_link_trigger_is_statement_level_with_transition_table(
    postgres_database: TestDatabase,
) -> None:
    """pg_trigger shows the appointment link trigger fires per statement over a transition table."""
    with postgres_database.engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT tgtype, tgnewtable FROM pg_trigger "
                "WHERE tgname = 'appointments_link_inserted'"
            )
        ).one()
    row_level_bit = 1
    assert row.tgtype & row_level_bit == 0
    assert row.tgnewtable == "inserted_appointments"


def test_multi_row_insert_issues_one_update(postgres_database: TestDatabase) -> None:
    """A 500-row INSERT updates calls once (pg_stat shows one UPDATE statement's worth of work)."""
    with postgres_database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO calls (retell_call_id) "
                "SELECT 'bulk-' || g FROM generate_series(1, 500) g"
            )
        )
        connection.exec_driver_sql("SET LOCAL track_functions = 'all'")
        connection.execute(
            text(
                "INSERT INTO appointments (call_id, status) "
                "SELECT id, 'booked' FROM calls WHERE retell_call_id LIKE 'bulk-%'"
            )
        )
        calls_of_function = connection.execute(
            text(
                "SELECT calls FROM pg_stat_xact_user_functions "
                "WHERE funcname = 'bookingguard_appointments_link_inserted'"
            )
        ).scalar_one()
        linked = connection.execute(
            text("SELECT count(*) FROM calls WHERE appointment_link_status = 'linked'")
        ).scalar_one()
    assert calls_of_function == 1
    assert linked == 500


def test_copy_links_calls(postgres_database: TestDatabase) -> None:
    """COPY into appointments fires the statement trigger and links the calls."""
    with postgres_database.engine.begin() as connection:
        ids = [insert_call(connection, f"copy-{n}") for n in range(3)]
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy("COPY appointments (call_id, status) FROM STDIN") as copy:
            for call_id in ids:
                copy.write_row((call_id, "booked"))
        linked = connection.execute(
            text("SELECT count(*) FROM calls WHERE appointment_made AND id = ANY(:ids)"),
            {"ids": ids},
        ).scalar_one()
    assert linked == 3


def _assert_unlinked(connection: Connection, call_id: int) -> None:
    row = call_row(connection, call_id)
    assert row.appointment_made is False
    assert row.session_outcome == "appointment_cancelled"
    assert row.appointment_link_status == "unlinked"


def test_deleting_last_appointment_unlinks_without_flip_back(database: TestDatabase) -> None:
    """Deleting a call's only appointment leaves it consistent, cancelled, and it stays that way."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, "r-del")
        appointment_id = insert_appointment(connection, call_id)
        connection.execute(text("DELETE FROM appointments WHERE id = :id"), {"id": appointment_id})
        _assert_unlinked(connection, call_id)
        connection.execute(
            text("UPDATE calls SET call_status = 'ended' WHERE id = :id"), {"id": call_id}
        )
        _assert_unlinked(connection, call_id)
        assert alerts_for(connection, call_id) == []


def test_cancelling_last_appointment_unlinks(database: TestDatabase) -> None:
    """Setting the only appointment's status to cancelled unlinks the call."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, "r-cancel")
        appointment_id = insert_appointment(connection, call_id)
        connection.execute(
            text("UPDATE appointments SET status = 'cancelled' WHERE id = :id"),
            {"id": appointment_id},
        )
        _assert_unlinked(connection, call_id)


@pytest.mark.parametrize("status", ["rescheduled", "rejected"])
def test_rescheduling_or_rejecting_last_appointment_unlinks(
    database: TestDatabase, status: str
) -> None:
    """A call's only appointment rescheduled or rejected: the call is no longer booked."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, f"r-{status}")
        appointment_id = insert_appointment(connection, call_id)
        assert call_row(connection, call_id).appointment_link_status == "linked"
        connection.execute(
            text("UPDATE appointments SET status = :status WHERE id = :id"),
            {"status": status, "id": appointment_id},
        )
        _assert_unlinked(connection, call_id)
        assert alerts_for(connection, call_id) == []


@pytest.mark.parametrize("status", ["rescheduled", "rejected", "cancelled"])
def test_not_live_appointment_insert_does_not_link(database: TestDatabase, status: str) -> None:
    """An appointment inserted rescheduled, rejected or cancelled does not link its call."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, f"r-new-{status}")
        insert_appointment(connection, call_id, status=status)
        row = call_row(connection, call_id)
        assert (row.appointment_made, row.appointment_link_status) == (False, None)


def test_rescheduled_with_its_successor_stays_linked(database: TestDatabase) -> None:
    """The old appointment rescheduled after the new one is stored: the call stays booked."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, "r-moved")
        old = insert_appointment(connection, call_id)
        insert_appointment(connection, call_id, status="pending")
        connection.execute(
            text("UPDATE appointments SET status = 'rescheduled' WHERE id = :id"), {"id": old}
        )
        row = call_row(connection, call_id)
        assert (row.appointment_made, row.session_outcome, row.appointment_link_status) == (
            True,
            "appointment_booked",
            "linked",
        )


def test_appointment_source_defaults_to_agent_and_is_checked(database: TestDatabase) -> None:
    """An appointment is 'agent' unless told otherwise; a source outside (agent, calcom) fails."""
    with database.engine.begin() as connection:
        made_here = insert_appointment(connection, None)
        made_elsewhere = insert_appointment(connection, None, source="calcom")
        table = Appointment.__table__
        sources = dict(
            connection.execute(
                select(table.c.id, table.c.source).where(
                    table.c.id.in_([made_here, made_elsewhere])
                )
            ).all()
        )
        assert sources == {made_here: "agent", made_elsewhere: "calcom"}
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        insert_appointment(connection, None, source="phone")


def test_call_with_another_live_appointment_stays_linked(database: TestDatabase) -> None:
    """Cancelling or deleting one of two live appointments keeps the call linked."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, "r-two")
        first = insert_appointment(connection, call_id)
        second = insert_appointment(connection, call_id)
        connection.execute(
            text("UPDATE appointments SET status = 'cancelled' WHERE id = :id"), {"id": first}
        )
        assert call_row(connection, call_id).appointment_link_status == "linked"
        connection.execute(text("DELETE FROM appointments WHERE id = :id"), {"id": first})
        row = call_row(connection, call_id)
        assert (row.appointment_made, row.appointment_link_status) == (True, "linked")
        connection.execute(text("DELETE FROM appointments WHERE id = :id"), {"id": second})
        _assert_unlinked(connection, call_id)


def test_one_statement_over_several_calls_keeps_each_consistent(database: TestDatabase) -> None:
    """Statements that change several calls' appointments at once (PostgreSQL's link
    functions branch on one call or many) link and unlink each call, and leave a call
    with another live appointment linked."""
    with database.engine.begin() as connection:
        calls = [insert_call(connection, f"r-many-{i}") for i in range(3)]
        firsts = [insert_appointment(connection, call_id) for call_id in calls]
        kept = insert_appointment(connection, calls[2])
        ids = {"ids": firsts}
        connection.execute(
            text("UPDATE appointments SET status = 'cancelled' WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            ids,
        )
        assert [call_row(connection, c).appointment_link_status for c in calls] == [
            "unlinked",
            "unlinked",
            "linked",
        ]
        connection.execute(
            text("UPDATE appointments SET status = 'booked' WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            ids,
        )
        assert [call_row(connection, c).appointment_made for c in calls] == [True, True, True]
        connection.execute(
            text("DELETE FROM appointments WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            ids,
        )
        for call_id in calls[:2]:
            _assert_unlinked(connection, call_id)
        assert call_row(connection, calls[2]).appointment_link_status == "linked"
        connection.execute(text("DELETE FROM appointments WHERE id = :id"), {"id": kept})
        _assert_unlinked(connection, calls[2])


def test_uncancelling_an_appointment_relinks(database: TestDatabase) -> None:
    """Moving a cancelled appointment back to confirmed links its call again."""
    with database.engine.begin() as connection:
        call_id = insert_call(connection, "r-back")
        appointment_id = insert_appointment(connection, call_id, status="cancelled")
        connection.execute(
            text("UPDATE appointments SET status = 'confirmed' WHERE id = :id"),
            {"id": appointment_id},
        )
        assert call_row(connection, call_id).appointment_link_status == "linked"


def test_customer_link_status_follows_customer_id(database: TestDatabase) -> None:
    """Setting and clearing customer_id keeps customer_link_status and linked_at in step."""
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO customers (name) VALUES ('Ada')"))
        customer_id = connection.execute(text("SELECT id FROM customers")).scalar_one()
        call_id = insert_call(connection, "r-cust")
        row = call_row(connection, call_id)
        assert (row.customer_link_status, row.customer_linked_at) == ("unlinked", None)
        connection.execute(
            text("UPDATE calls SET customer_id = :c WHERE id = :id"),
            {"c": customer_id, "id": call_id},
        )
        row = call_row(connection, call_id)
        assert row.customer_link_status == "linked"
        assert row.customer_linked_at is not None
        connection.execute(
            text("UPDATE calls SET customer_id = NULL WHERE id = :id"), {"id": call_id}
        )
        row = call_row(connection, call_id)
        assert (row.customer_link_status, row.customer_linked_at) == ("unlinked", None)
        linked_on_insert = insert_call(connection, "r-cust2", customer_id=customer_id)
        assert call_row(connection, linked_on_insert).customer_link_status == "linked"


def test_triggers_can_be_disabled_and_enabled(database: TestDatabase) -> None:
    """Disabling the direction guarantee stores NULL; enabling it again restores the default."""
    with database.engine.begin() as connection:
        ddl.set_triggers_enabled(connection, enabled=False, names=["direction"])
        statuses = {s.name: s.enabled for s in ddl.trigger_status(connection)}
        assert statuses["calls_default_direction"] is False
        assert statuses["appointments_link_inserted"] is True
        off = insert_call(connection, "r-off")
        assert call_row(connection, off).direction is None
        ddl.set_triggers_enabled(connection, enabled=True)
        on = insert_call(connection, "r-on")
        assert call_row(connection, on).direction == "inbound"
        assert all(s.enabled for s in ddl.trigger_status(connection))


def test_unknown_trigger_name_is_refused(database: TestDatabase) -> None:
    """Naming a trigger that does not exist is an error that lists the known names."""
    with database.engine.begin() as connection, pytest.raises(ValueError, match="known:"):
        ddl.set_triggers_enabled(connection, enabled=False, names=["nope"])


def test_bulk_import_links_calls_with_triggers_off(database: TestDatabase) -> None:
    """The bulk-import path inserts appointments and links their calls even with triggers off."""
    with database.engine.begin() as connection:
        ddl.set_triggers_enabled(connection, enabled=False, names=["appointment_link"])
        ids = [insert_call(connection, f"imp-{n}") for n in range(50)]
        start = datetime(2026, 12, 1, 9, tzinfo=UTC)
        result = import_appointments(
            connection, [{"call_id": call_id, "starts_at": start} for call_id in ids]
        )
        assert result.inserted == 50
        assert result.calls_linked == 50
        linked = connection.execute(
            text("SELECT count(*) FROM calls WHERE appointment_link_status = 'linked'")
        ).scalar_one()
        assert linked == 50
        assert resync_call_links(connection) == 0


def test_postgres_alerts_are_partitioned_by_month(postgres_database: TestDatabase) -> None:
    """The alerts table is range-partitioned; this month's and next month's partitions exist."""
    with postgres_database.engine.begin() as connection:
        strategy = connection.execute(
            text(
                "SELECT partstrat FROM pg_partitioned_table "
                "WHERE partrelid = 'data_consistency_alerts'::regclass"
            )
        ).scalar_one()
        assert strategy == "r"
        now = datetime.now(UTC)
        this_month = f"data_consistency_alerts_{now:%Y_%m}"
        partitions = set(
            connection.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'data_consistency_alerts'::regclass"
                )
            ).scalars()
        )
        assert this_month in partitions
        assert len(partitions) == 3


def test_partition_upkeep_moves_rows_out_of_default(postgres_database: TestDatabase) -> None:
    """An alert for a month with no partition lands in default and moves when upkeep creates it."""
    future = datetime(2031, 5, 17, tzinfo=UTC)
    with postgres_database.engine.begin() as connection:
        connection.execute(
            ConsistencyAlert.__table__.insert().values(
                alert_type="missing_direction",
                severity="warning",
                entity_type="call",
                entity_id=1,
                description="x",
                detected_at=future,
            )
        )
        created = ddl.ensure_alert_partitions(connection, start=future.date(), months=1)
        assert created == 1
        located = connection.execute(
            text("SELECT tableoid::regclass::text FROM data_consistency_alerts")
        ).scalar_one()
        assert located == "data_consistency_alerts_2031_05"
        assert ddl.ensure_alert_partitions(connection, start=future.date(), months=1) == 0
