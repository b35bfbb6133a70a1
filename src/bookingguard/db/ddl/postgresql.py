"""PostgreSQL DDL for the database-side guarantees (DESIGN.md 1-6) and alert partitions.

Row triggers carry ``WHEN`` clauses so the common, already-consistent row never
enters PL/pgSQL. Appointment linking is statement-level with transition tables:
a 100 000-row INSERT or COPY costs one locking pass over its calls and one
``UPDATE … FROM`` the transition table.

Linking holds under concurrency. A statement's snapshot cannot see another
transaction's uncommitted appointment, so a decision taken from it alone (link? unlink?)
can be stale by the time it is applied: a new appointment and the deletion of the old
one, at once, left the call unbooked beside a live appointment. So each link function
first locks the calls its transition tables name, in id order (no deadlock between two
of them), and decides in a following statement: under READ COMMITTED, which bookingguard
and PostgreSQL use by default, that statement takes a new snapshot and sees whatever
committed while the lock was awaited. Two transactions changing one call's appointments
thus decide one after the other, the second seeing the first. (REPEATABLE READ keeps
the first snapshot, so the guarantee assumes READ COMMITTED.)

The outcome correction is split as the predecessor review recommends: the BEFORE
trigger only corrects ``NEW`` and leaves a transaction-local note (a custom GUC
keyed by the call id); the AFTER trigger, which runs once the row exists, turns
that note into an alert row with the call's real id.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bookingguard.db.models import NOT_LIVE_APPOINTMENT_STATUSES, live_appointment_sql

__all__ = [
    "CHECK_CONSTRAINT",
    "FUNCTIONS",
    "LATEST_FUNCTIONS",
    "PARTITION_FUNCTION",
    "TRIGGERS",
    "PgTrigger",
    "functions",
]


@dataclass(frozen=True)
class PgTrigger:
    name: str
    table: str
    create: str


_LINKED = """
        appointment_made = true,
        session_outcome = 'appointment_booked',
        appointment_link_status = 'linked',
        appointment_linked_at = now(),
        updated_at = now()"""

_NEEDS_LINK = """(c.appointment_made IS NOT TRUE
             OR c.appointment_link_status IS DISTINCT FROM 'linked'
             OR c.session_outcome IS DISTINCT FROM 'appointment_booked')"""

_UNLINKED = """
        appointment_made = false,
        session_outcome = CASE WHEN c.session_outcome = 'appointment_booked'
                               THEN 'appointment_cancelled' ELSE c.session_outcome END,
        appointment_link_status = 'unlinked',
        appointment_linked_at = NULL,
        updated_at = now()"""


def _no_live_appointment(not_live: Sequence[str]) -> str:
    live = live_appointment_sql("a.status", not_live)
    return f"""NOT EXISTS (
            SELECT 1 FROM appointments a WHERE a.call_id = c.id AND {live})
        AND (c.appointment_made OR c.appointment_link_status = 'linked'
             OR c.session_outcome = 'appointment_booked')"""


#: Calls whose appointment changed status or call in an UPDATE statement (old and new side).
_CHANGED_CALLS = """(
        SELECT o.call_id FROM old_appointments o JOIN new_appointments n ON n.id = o.id
        WHERE (o.status, o.call_id) IS DISTINCT FROM (n.status, n.call_id)
        UNION
        SELECT n.call_id FROM old_appointments o JOIN new_appointments n ON n.id = o.id
        WHERE (o.status, o.call_id) IS DISTINCT FROM (n.status, n.call_id))"""


#: The revision whose link functions are current: see ``functions``.
LATEST_FUNCTIONS = 9


def _lock_calls(match: str) -> str:
    """PL/pgSQL: lock the calls that ``match`` selects (as ``c``), in id order, before any
    decision.

    ``FOR NO KEY UPDATE`` is the lock an UPDATE of the call takes anyway; ``FOR UPDATE``
    would also conflict with the key-share lock a foreign key takes on the call (an
    appointment or a review item inserted for it), so two transactions holding that
    lock would deadlock once both link.
    """
    return f"PERFORM 1 FROM calls c WHERE {match} ORDER BY c.id FOR NO KEY UPDATE;"


def _for_calls(ids: str, statements: Callable[[str], str], *, one_call_plans: bool) -> str:
    """PL/pgSQL: ``statements(match)``, where ``match`` selects the calls (as ``c``) whose
    ids are in the array variable ``ids``.

    The ids are a variable, not a subquery: the statement is planned with the array
    itself, so an index scan gives the id order without a sort (about 5 us for one call,
    where the subquery's generic estimate chose a sequential scan and a sort: 165 us on
    a 2 000-call table). Planned with the array, though, each such statement is planned
    again on every call: the generic plan of ``c.id = ANY(ids)`` is estimated dearer than
    the array's own, and on a small table it scans. With ``one_call_plans`` (revision
    0009 on) the common case, one call, runs statements on ``ids[1]`` instead, whose
    generic plan is the primary key's: PL/pgSQL keeps it, and a booking's write stops
    planning three statements (0.58 ms of planning a booking, measured with
    pg_stat_statements' ``track_planning``).
    """
    many = statements(f"c.id = ANY({ids})")
    if not one_call_plans:
        return many
    one = statements(f"c.id = {ids}[1]")
    return (
        f"IF cardinality({ids}) = 1 THEN\n{_indented(one)}\n"
        f"    ELSE\n{_indented(many)}\n    END IF;"
    )


def _indented(statements: str) -> str:
    """``statements`` of a function's body (the first line unindented) moved into a branch."""
    return "        " + textwrap.indent(statements, "    ").lstrip()


_CALL_FUNCTIONS: tuple[str, ...] = (
    """
CREATE OR REPLACE FUNCTION bookingguard_calls_default_direction() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.direction := 'inbound';
    RETURN NEW;
END $$""",
    """
CREATE OR REPLACE FUNCTION bookingguard_calls_customer_link() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.customer_id IS NULL THEN
        NEW.customer_link_status := 'unlinked';
        NEW.customer_linked_at := NULL;
    ELSIF TG_OP = 'INSERT' OR OLD.customer_id IS DISTINCT FROM NEW.customer_id THEN
        NEW.customer_link_status := 'linked';
        NEW.customer_linked_at := now();
    END IF;
    RETURN NEW;
END $$""",
    """
CREATE OR REPLACE FUNCTION bookingguard_calls_outcome_consistency() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    note jsonb;
BEGIN
    IF NEW.session_outcome = 'appointment_booked' THEN
        note := jsonb_build_object(
            'corrected_field', 'appointment_made', 'before', false, 'after', true,
            'session_outcome', NEW.session_outcome, 'operation', TG_OP);
        NEW.appointment_made := true;
    ELSE
        note := jsonb_build_object(
            'corrected_field', 'session_outcome', 'before', NEW.session_outcome,
            'after', 'appointment_booked', 'appointment_made', true, 'operation', TG_OP);
        NEW.session_outcome := 'appointment_booked';
    END IF;
    PERFORM set_config('bookingguard.correction_' || NEW.id, note::text, true);
    RETURN NEW;
END $$""",
    """
CREATE OR REPLACE FUNCTION bookingguard_calls_log_correction() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    setting text := 'bookingguard.correction_' || NEW.id;
    note jsonb := current_setting(setting)::jsonb;
BEGIN
    INSERT INTO data_consistency_alerts (
        alert_type, severity, entity_type, entity_id, description, metadata,
        detected_at, auto_corrected, corrected_at, fingerprint, status,
        last_seen_at, occurrences, resolved_at, created_at, updated_at)
    VALUES (
        'session_outcome_mismatch', 'critical', 'call', NEW.id,
        format('Call %s: %s auto-corrected so that appointment_made and session_outcome agree',
               NEW.id, note->>'corrected_field'),
        note || jsonb_build_object('call_id', NEW.id, 'retell_call_id', NEW.retell_call_id,
                                   'source', 'database_trigger'),
        now(), true, now(), 'session_outcome_mismatch:call:' || NEW.id, 'resolved',
        now(), 1, now(), now(), now());
    PERFORM set_config(setting, '', true);
    RETURN NULL;
END $$""",
)


def functions(
    not_live: Sequence[str] = NOT_LIVE_APPOINTMENT_STATUSES, *, as_of: int = LATEST_FUNCTIONS
) -> tuple[str, ...]:
    """Every trigger function, with "live" meaning a status outside ``not_live``, as the
    migration ``as_of`` defined it (migrations pass their own revision).

    From revision 0007 on the link functions lock their calls before they decide; before
    it they decide from the statement's snapshot. From revision 0009 on, a statement
    that touches one call keeps its plan (``_for_calls``), and a statement that links
    no live appointment returns before it plans anything.
    """
    lock_calls = as_of >= 7
    one_call_plans = as_of >= 9
    live_inserted = live_appointment_sql("n.status", not_live)
    live_existing = live_appointment_sql("a.status", not_live)
    no_live = _no_live_appointment(not_live)

    def lock(ids: str) -> str:
        if not lock_calls:
            return ""
        early = f"IF cardinality({ids}) = 0 THEN\n        RETURN NULL;\n    END IF;\n    "
        locking = _for_calls(ids, _lock_calls, one_call_plans=one_call_plans)
        return f"{early if one_call_plans else ''}{locking}\n    "

    def declare_locked(call_ids: str) -> str:
        return f"DECLARE\n    locked bigint[] := ARRAY({call_ids});\n" if lock_calls else ""

    def resync(match: str) -> str:
        return f"""UPDATE calls c SET {_LINKED}
    WHERE {match}
      AND EXISTS (SELECT 1 FROM appointments a WHERE a.call_id = c.id AND {live_existing})
      AND {_NEEDS_LINK};

    UPDATE calls c SET {_UNLINKED}
    WHERE {match} AND {no_live};"""

    # The changed calls are locked and resynced in one branch, so ``cardinality`` is
    # tested once.
    def lock_and_resync(match: str) -> str:
        return f"{_lock_calls(match)}\n    {resync(match)}" if lock_calls else resync(match)

    return (
        *_CALL_FUNCTIONS,
        f"""
CREATE OR REPLACE FUNCTION bookingguard_appointments_link_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
{declare_locked(f"SELECT n.call_id FROM inserted_appointments n WHERE {live_inserted}")}BEGIN
    {lock("locked")}UPDATE calls c SET {_LINKED}
    FROM inserted_appointments n
    WHERE c.id = n.call_id AND {live_inserted} AND {_NEEDS_LINK};
    RETURN NULL;
END $$""",
        f"""
CREATE OR REPLACE FUNCTION bookingguard_appointments_unlink_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
{declare_locked("SELECT call_id FROM deleted_appointments")}BEGIN
    {lock("locked")}UPDATE calls c SET {_UNLINKED}
    FROM (SELECT DISTINCT call_id FROM deleted_appointments WHERE call_id IS NOT NULL) d
    WHERE c.id = d.call_id AND {no_live};
    RETURN NULL;
END $$""",
        f"""
CREATE OR REPLACE FUNCTION bookingguard_appointments_resync_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed bigint[] := ARRAY(SELECT ch.call_id FROM {_CHANGED_CALLS} ch
                              WHERE ch.call_id IS NOT NULL);
BEGIN
    IF cardinality(changed) = 0 THEN
        RETURN NULL;
    END IF;
    {_for_calls("changed", lock_and_resync, one_call_plans=one_call_plans)}
    RETURN NULL;
END $$""",
    )


#: The functions of the current definition of a live appointment.
FUNCTIONS: tuple[str, ...] = functions()

TRIGGERS: tuple[PgTrigger, ...] = (
    PgTrigger(
        "calls_default_direction",
        "calls",
        """CREATE TRIGGER calls_default_direction BEFORE INSERT ON calls FOR EACH ROW
           WHEN (NEW.direction IS NULL OR NEW.direction = '')
           EXECUTE FUNCTION bookingguard_calls_default_direction()""",
    ),
    PgTrigger(
        "calls_customer_link",
        "calls",
        """CREATE TRIGGER calls_customer_link BEFORE INSERT OR UPDATE OF customer_id ON calls
           FOR EACH ROW EXECUTE FUNCTION bookingguard_calls_customer_link()""",
    ),
    PgTrigger(
        "calls_outcome_consistency",
        "calls",
        """CREATE TRIGGER calls_outcome_consistency BEFORE INSERT OR UPDATE ON calls FOR EACH ROW
           WHEN ((COALESCE(NEW.session_outcome, '') = 'appointment_booked')
                 IS DISTINCT FROM NEW.appointment_made)
           EXECUTE FUNCTION bookingguard_calls_outcome_consistency()""",
    ),
    PgTrigger(
        "calls_log_correction",
        "calls",
        """CREATE TRIGGER calls_log_correction AFTER INSERT OR UPDATE ON calls FOR EACH ROW
           WHEN (current_setting('bookingguard.correction_' || NEW.id, true) <> '')
           EXECUTE FUNCTION bookingguard_calls_log_correction()""",
    ),
    PgTrigger(
        "appointments_link_inserted",
        "appointments",
        """CREATE TRIGGER appointments_link_inserted AFTER INSERT ON appointments
           REFERENCING NEW TABLE AS inserted_appointments
           FOR EACH STATEMENT EXECUTE FUNCTION bookingguard_appointments_link_inserted()""",
    ),
    PgTrigger(
        "appointments_unlink_deleted",
        "appointments",
        """CREATE TRIGGER appointments_unlink_deleted AFTER DELETE ON appointments
           REFERENCING OLD TABLE AS deleted_appointments
           FOR EACH STATEMENT EXECUTE FUNCTION bookingguard_appointments_unlink_deleted()""",
    ),
    PgTrigger(
        "appointments_resync_updated",
        "appointments",
        """CREATE TRIGGER appointments_resync_updated AFTER UPDATE ON appointments
           REFERENCING OLD TABLE AS old_appointments NEW TABLE AS new_appointments
           FOR EACH STATEMENT EXECUTE FUNCTION bookingguard_appointments_resync_updated()""",
    ),
)

FUNCTION_NAMES: tuple[str, ...] = (
    "bookingguard_calls_default_direction",
    "bookingguard_calls_customer_link",
    "bookingguard_calls_outcome_consistency",
    "bookingguard_calls_log_correction",
    "bookingguard_appointments_link_inserted",
    "bookingguard_appointments_unlink_deleted",
    "bookingguard_appointments_resync_updated",
)

#: The backstop: a stored row whose flag and outcome disagree is rejected outright.
CHECK_CONSTRAINT = (
    "ALTER TABLE calls ADD CONSTRAINT ck_calls_outcome_matches_flag CHECK ("
    "(COALESCE(session_outcome, '') = 'appointment_booked') = appointment_made)"
)
CHECK_CONSTRAINT_NAME = "ck_calls_outcome_matches_flag"

#: Creates the monthly partitions covering ``months`` months from ``start``. Rows that
#: already landed in the default partition for such a month are moved into it.
PARTITION_FUNCTION = """
CREATE OR REPLACE FUNCTION bookingguard_ensure_alert_partitions(start date, months integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz;
    hi timestamptz;
    part text;
    created integer := 0;
BEGIN
    FOR i IN 0 .. months - 1 LOOP
        lo := (date_trunc('month', start::timestamp) + make_interval(months => i))
              AT TIME ZONE 'UTC';
        hi := (date_trunc('month', start::timestamp) + make_interval(months => i + 1))
              AT TIME ZONE 'UTC';
        part := 'data_consistency_alerts_' || to_char(lo AT TIME ZONE 'UTC', 'YYYY_MM');
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I (LIKE data_consistency_alerts '
                       'INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format('WITH moved AS (DELETE FROM data_consistency_alerts_default '
                       'WHERE detected_at >= %L AND detected_at < %L RETURNING *) '
                       'INSERT INTO %I SELECT * FROM moved', lo, hi, part);
        EXECUTE format('ALTER TABLE data_consistency_alerts ATTACH PARTITION %I '
                       'FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        created := created + 1;
    END LOOP;
    RETURN created;
END $$"""
