"""The breaker's history names the store that decided each transition.

While processes disagree on which store is up (one back on Redis after an outage,
another still on SQL for a moment), two stores decide for one circuit, each from
its own state: the history keeps both chains, and ``decided_by`` tells them apart
(``redis``, ``sql``, or ``memory:<host>:<pid>`` for one process's memory). Rows
written before this revision have none.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "circuit_breaker_transitions"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("decided_by", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("decided_by")
