"""SQLite DDL for the database-side guarantees, observably the same as PostgreSQL's.

SQLite triggers cannot change ``NEW``, so each correction is an AFTER trigger that
updates the row it fired for, inside the same statement. SQLite has no
statement-level triggers; its appointment triggers are per row, which is what an
embedded single-writer database needs. SQLite has no way to switch a trigger off,
so disabling one drops it and enabling it creates it again from this module.

The link triggers need no lock of their own to hold under concurrency: SQLite
serialises writers, a transaction's first write waits for the one write lock, and in
WAL mode a transaction whose snapshot predates another's commit cannot start writing
(``SQLITE_BUSY_SNAPSHOT``), so every trigger decides from the latest committed state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bookingguard.db.models import NOT_LIVE_APPOINTMENT_STATUSES, live_appointment_sql

__all__ = ["NOW", "TRIGGERS", "SqliteTrigger", "triggers"]

#: The same text form SQLAlchemy writes for our UTC timestamps (microseconds, no zone).
NOW = "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"


@dataclass(frozen=True)
class SqliteTrigger:
    name: str
    table: str
    create: str


_LINKED = f"""appointment_made = 1, session_outcome = 'appointment_booked',
        appointment_link_status = 'linked', appointment_linked_at = {NOW}, updated_at = {NOW}"""

_NEEDS_LINK = """(appointment_made = 0 OR appointment_link_status IS NOT 'linked'
             OR session_outcome IS NOT 'appointment_booked')"""

_UNLINKED = f"""appointment_made = 0,
        session_outcome = CASE WHEN session_outcome = 'appointment_booked'
                               THEN 'appointment_cancelled' ELSE session_outcome END,
        appointment_link_status = 'unlinked', appointment_linked_at = NULL, updated_at = {NOW}"""


def _no_live_appointment(not_live: Sequence[str]) -> str:
    live = live_appointment_sql("a.status", not_live)
    return f"""NOT EXISTS (
            SELECT 1 FROM appointments a WHERE a.call_id = calls.id AND {live})
        AND (appointment_made = 1 OR appointment_link_status = 'linked'
             OR session_outcome = 'appointment_booked')"""


_OUTCOME_DISAGREES = (
    "(COALESCE(NEW.session_outcome, '') = 'appointment_booked') <> (NEW.appointment_made <> 0)"
)

_CORRECT_OUTCOME = f"""
    UPDATE calls SET appointment_made = 1, session_outcome = 'appointment_booked'
    WHERE id = NEW.id;
    INSERT INTO data_consistency_alerts (
        alert_type, severity, entity_type, entity_id, description, metadata,
        detected_at, auto_corrected, corrected_at, fingerprint, status,
        last_seen_at, occurrences, resolved_at, created_at, updated_at)
    VALUES (
        'session_outcome_mismatch', 'critical', 'call', NEW.id,
        'Call ' || NEW.id || ': '
            || CASE WHEN NEW.session_outcome = 'appointment_booked'
                    THEN 'appointment_made' ELSE 'session_outcome' END
            || ' auto-corrected so that appointment_made and session_outcome agree',
        json_object(
            'corrected_field', CASE WHEN NEW.session_outcome = 'appointment_booked'
                                    THEN 'appointment_made' ELSE 'session_outcome' END,
            'before', CASE WHEN NEW.session_outcome = 'appointment_booked'
                           THEN json('false') ELSE NEW.session_outcome END,
            'after', CASE WHEN NEW.session_outcome = 'appointment_booked'
                          THEN json('true') ELSE 'appointment_booked' END,
            'call_id', NEW.id, 'retell_call_id', NEW.retell_call_id,
            'source', 'database_trigger'),
        {NOW}, 1, {NOW}, 'session_outcome_mismatch:call:' || NEW.id, 'resolved',
        {NOW}, 1, {NOW}, {NOW}, {NOW});"""

_CUSTOMER_LINK = f"""
    UPDATE calls SET
        customer_link_status = CASE WHEN NEW.customer_id IS NULL THEN 'unlinked' ELSE 'linked' END,
        customer_linked_at = CASE WHEN NEW.customer_id IS NULL THEN NULL ELSE {NOW} END
    WHERE id = NEW.id;"""

_CALL_TRIGGERS: tuple[SqliteTrigger, ...] = (
    SqliteTrigger(
        "calls_default_direction",
        "calls",
        """CREATE TRIGGER IF NOT EXISTS calls_default_direction AFTER INSERT ON calls
           WHEN NEW.direction IS NULL OR NEW.direction = ''
           BEGIN UPDATE calls SET direction = 'inbound' WHERE id = NEW.id; END""",
    ),
    SqliteTrigger(
        "calls_customer_link",
        "calls",
        f"""CREATE TRIGGER IF NOT EXISTS calls_customer_link AFTER INSERT ON calls
           WHEN (NEW.customer_id IS NULL AND NEW.customer_link_status IS NOT 'unlinked')
             OR (NEW.customer_id IS NOT NULL
                 AND (NEW.customer_link_status IS NOT 'linked' OR NEW.customer_linked_at IS NULL))
           BEGIN {_CUSTOMER_LINK} END""",
    ),
    SqliteTrigger(
        "calls_customer_relink",
        "calls",
        f"""CREATE TRIGGER IF NOT EXISTS calls_customer_relink AFTER UPDATE OF customer_id ON calls
           WHEN NEW.customer_id IS NOT OLD.customer_id
           BEGIN {_CUSTOMER_LINK} END""",
    ),
    SqliteTrigger(
        "calls_outcome_consistency",
        "calls",
        f"""CREATE TRIGGER IF NOT EXISTS calls_outcome_consistency AFTER INSERT ON calls
           WHEN {_OUTCOME_DISAGREES}
           BEGIN {_CORRECT_OUTCOME} END""",
    ),
    SqliteTrigger(
        "calls_outcome_consistency_update",
        "calls",
        f"""CREATE TRIGGER IF NOT EXISTS calls_outcome_consistency_update
           AFTER UPDATE OF session_outcome, appointment_made ON calls
           WHEN {_OUTCOME_DISAGREES}
           BEGIN {_CORRECT_OUTCOME} END""",
    ),
)


def triggers(not_live: Sequence[str] = NOT_LIVE_APPOINTMENT_STATUSES) -> tuple[SqliteTrigger, ...]:
    """Every trigger, with "live" meaning a status outside ``not_live``."""
    live_new = live_appointment_sql("NEW.status", not_live)
    no_live = _no_live_appointment(not_live)
    return (
        *_CALL_TRIGGERS,
        SqliteTrigger(
            "appointments_link_inserted",
            "appointments",
            f"""CREATE TRIGGER IF NOT EXISTS appointments_link_inserted
               AFTER INSERT ON appointments
               WHEN NEW.call_id IS NOT NULL AND {live_new}
               BEGIN
                   UPDATE calls SET {_LINKED} WHERE id = NEW.call_id AND {_NEEDS_LINK};
               END""",
        ),
        SqliteTrigger(
            "appointments_unlink_deleted",
            "appointments",
            f"""CREATE TRIGGER IF NOT EXISTS appointments_unlink_deleted
               AFTER DELETE ON appointments
               WHEN OLD.call_id IS NOT NULL
               BEGIN
                   UPDATE calls SET {_UNLINKED} WHERE id = OLD.call_id AND {no_live};
               END""",
        ),
        SqliteTrigger(
            "appointments_resync_updated",
            "appointments",
            f"""CREATE TRIGGER IF NOT EXISTS appointments_resync_updated
               AFTER UPDATE OF status, call_id ON appointments
               WHEN NEW.status IS NOT OLD.status OR NEW.call_id IS NOT OLD.call_id
               BEGIN
                   UPDATE calls SET {_LINKED}
                   WHERE id = NEW.call_id AND {live_new} AND {_NEEDS_LINK};
                   UPDATE calls SET {_UNLINKED}
                   WHERE id IN (OLD.call_id, NEW.call_id) AND {no_live};
               END""",
        ),
    )


#: The triggers of the current definition of a live appointment.
TRIGGERS: tuple[SqliteTrigger, ...] = triggers()
