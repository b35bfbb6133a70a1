"""The link triggers keep their plans when one call changes (issue 14's booking path).

Up to this revision each PostgreSQL link function matched its calls with
``c.id = ANY(ids)``: PostgreSQL planned those statements again on every call, as the
generic plan of an array it cannot see is estimated dearer than the array's own. A
booking's write planned three of them, 0.58 ms of a booking. Now the functions take a
branch of their own for one call, whose statements keep their generic plan, and return
at once when no live appointment is involved (a claim). What they decide is unchanged.
SQLite's triggers are untouched.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from bookingguard.db.ddl import install_live_definition

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The statuses that are not live, as revision 0006 defined them.
NOT_LIVE = ("cancelled", "rescheduled", "rejected", "pending_creation")


def upgrade() -> None:
    install_live_definition(op.get_bind(), not_live=NOT_LIVE, as_of=9)


def downgrade() -> None:
    install_live_definition(op.get_bind(), not_live=NOT_LIVE, as_of=7)
