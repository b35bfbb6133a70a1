"""The link triggers lock their calls before they decide (issue 14, finding 9).

Until this revision each PostgreSQL link function decided from its statement's snapshot:
one transaction inserting a call's new appointment while another deleted or cancelled
its old one left the call unbooked beside a live appointment (and two transactions
cancelling a call's two appointments left it booked with none). Now each function
first locks the calls it touches, in id order, and decides in a following statement,
which under READ COMMITTED sees whatever committed while it waited. SQLite serialises
writers, so its triggers stay as they are (they are recreated unchanged).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-15
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from bookingguard.db.ddl import install_live_definition

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The statuses that are not live, as revision 0006 defined them.
NOT_LIVE = ("cancelled", "rescheduled", "rejected", "pending_creation")


def upgrade() -> None:
    install_live_definition(op.get_bind(), not_live=NOT_LIVE, as_of=7)


def downgrade() -> None:
    install_live_definition(op.get_bind(), not_live=NOT_LIVE, as_of=6)
