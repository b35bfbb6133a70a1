"""Appointments made elsewhere, rejected ones, and "live" as one definition.

An appointment gets a ``source``: ``agent`` (booked through our functions: every row
that exists before this revision) or ``calcom`` (booked elsewhere, such as the
business's own booking page; it has no call). ``rejected`` joins the statuses (Cal.com
rejects a booking that required confirmation). A ``rescheduled`` or ``rejected``
appointment no longer holds its slot: like a ``cancelled`` one it is not live, in the
link triggers (its call is unlinked when it was the call's last live appointment) and in
the partial index of live appointments by call, which carries the source as well
(PostgreSQL): the orphaned-appointment rule reads it, and without it the rule's scan of
every row left the index for the table (143 ms, 87 ms with it, on the monitor bench's
200 000 calls).

On SQLite the CHECK constraint is changed by copying the table (batch mode), which
drops the table's triggers: the link triggers that were on are created again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bookingguard.db.ddl import install_live_definition, trigger_status

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "appointments"
LIVE_INDEX = "ix_appointments_live_call_id"
OLD_STATUSES = (
    "pending",
    "booked",
    "confirmed",
    "rescheduled",
    "cancelled",
    "completed",
    "no_show",
)
NEW_STATUSES = (*OLD_STATUSES, "rejected")
OLD_NOT_LIVE = ("cancelled",)
NEW_NOT_LIVE = ("cancelled", "rescheduled", "rejected")
SOURCES = ("agent", "calcom")
#: The status CHECK as revision 0001 named it (the naming convention applied to a full
#: name), and as the models name it.
OLD_STATUS_CHECK = "ck_appointments_ck_appointments_status"
NEW_STATUS_CHECK = "ck_appointments_status"


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def _not_live(values: Sequence[str]) -> sa.TextClause:
    return sa.text(f"status NOT IN ({', '.join(repr(value) for value in values)})")


def upgrade() -> None:
    _switch(
        checks=(OLD_STATUS_CHECK, NEW_STATUS_CHECK),
        statuses=NEW_STATUSES,
        not_live=NEW_NOT_LIVE,
        add_source=True,
    )


def downgrade() -> None:
    op.execute(f"DELETE FROM {TABLE} WHERE status = 'rejected'")
    _switch(
        checks=(NEW_STATUS_CHECK, OLD_STATUS_CHECK),
        statuses=OLD_STATUSES,
        not_live=OLD_NOT_LIVE,
        add_source=False,
    )


def _switch(
    *,
    checks: tuple[str, str],
    statuses: Sequence[str],
    not_live: Sequence[str],
    add_source: bool,
) -> None:
    old_check, new_check = checks
    bind = op.get_bind()
    on_before = {status.name for status in trigger_status(bind) if status.enabled}
    op.drop_index(LIVE_INDEX, table_name=TABLE)
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_constraint(op.f(old_check), type_="check")
        batch.create_check_constraint(op.f(new_check), _one_of("status", statuses))
        if add_source:
            batch.add_column(
                sa.Column(
                    "source", sa.String(10), server_default=sa.text("'agent'"), nullable=False
                )
            )
            batch.create_check_constraint(
                op.f("ck_appointments_source"), _one_of("source", SOURCES)
            )
        else:
            batch.drop_constraint(op.f("ck_appointments_source"), type_="check")
            batch.drop_column("source")
    op.create_index(
        LIVE_INDEX,
        TABLE,
        ["call_id"],
        postgresql_include=["id", "created_at"],
        postgresql_where=_not_live(not_live),
        sqlite_where=_not_live(not_live),
    )
    install_live_definition(bind, not_live=not_live, enabled=on_before, as_of=5)
