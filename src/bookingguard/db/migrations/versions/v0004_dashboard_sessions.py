"""Dashboard sessions: the cookie holds a random session id, no longer the API token.

A session is revocable (log out) and expires; the one-time login link is spent
once it has made a session (``login_hash`` unique), whichever worker or replica
served it. Kept in the database because ``serve --workers`` and replicas share
nothing else.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bookingguard.db.types import BigIntPK, UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "dashboard_sessions"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("token_name", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("login_hash", sa.String(64)),
        sa.Column(
            "created_at", UTCDateTime, server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.UniqueConstraint("session_hash", name="uq_dashboard_sessions_session_hash"),
        sa.UniqueConstraint("login_hash", name="uq_dashboard_sessions_login_hash"),
        sa.CheckConstraint("scope IN ('read', 'operate')", name="ck_dashboard_sessions_scope"),
    )
    op.create_index("ix_dashboard_sessions_expires_at", TABLE, ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_expires_at", table_name=TABLE)
    op.drop_table(TABLE)
