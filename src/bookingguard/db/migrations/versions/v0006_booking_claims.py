"""A booking's claim: ``pending_creation`` becomes an appointment status, not live.

The booking path inserts the appointment row for its idempotency key (unique) in
``pending_creation`` before it asks Cal.com, so that one request per key, in any
process or replica, creates the booking; the row becomes the appointment once Cal.com
answers. A claim holds no slot yet: it is not live, in the link triggers (it never
links its call) and in the partial index of live appointments by call, the monitor's
rules reading "live" from the same definition.

On SQLite the CHECK constraint is changed by copying the table (batch mode), which
drops the table's triggers: the link triggers that were on are created again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bookingguard.db.ddl import install_live_definition, trigger_status

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "appointments"
LIVE_INDEX = "ix_appointments_live_call_id"
STATUS_CHECK = "ck_appointments_status"
OLD_STATUSES = (
    "pending",
    "booked",
    "confirmed",
    "rescheduled",
    "cancelled",
    "completed",
    "no_show",
    "rejected",
)
NEW_STATUSES = (*OLD_STATUSES, "pending_creation")
OLD_NOT_LIVE = ("cancelled", "rescheduled", "rejected")
NEW_NOT_LIVE = (*OLD_NOT_LIVE, "pending_creation")


def _not_live(values: Sequence[str]) -> sa.TextClause:
    return sa.text(f"status NOT IN ({', '.join(repr(value) for value in values)})")


def upgrade() -> None:
    _switch(statuses=NEW_STATUSES, not_live=NEW_NOT_LIVE)


def downgrade() -> None:
    # A claim still open has no Cal.com booking recorded: without the status it is nothing.
    op.execute(f"DELETE FROM {TABLE} WHERE status = 'pending_creation'")
    _switch(statuses=OLD_STATUSES, not_live=OLD_NOT_LIVE)


def _switch(*, statuses: Sequence[str], not_live: Sequence[str]) -> None:
    bind = op.get_bind()
    on_before = {status.name for status in trigger_status(bind) if status.enabled}
    op.drop_index(LIVE_INDEX, table_name=TABLE)
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_constraint(op.f(STATUS_CHECK), type_="check")
        batch.create_check_constraint(
            op.f(STATUS_CHECK), f"status IN ({', '.join(repr(value) for value in statuses)})"
        )
    op.create_index(
        LIVE_INDEX,
        TABLE,
        ["call_id"],
        postgresql_include=["id", "created_at"],
        postgresql_where=_not_live(not_live),
        sqlite_where=_not_live(not_live),
    )
    # The functions of this revision: they lock no calls yet (revision 0007 on).
    install_live_definition(bind, not_live=not_live, enabled=on_before, as_of=6)
