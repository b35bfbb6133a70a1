"""Indexes for the monitor's rules: covering window indexes and live appointments by call.

The window rules read ``calls`` and ``appointments`` by ``created_at``; with the
columns they test carried in the index (``INCLUDE``, PostgreSQL only) they become
index-only scans. The "has a live appointment" probe of several rules reads a
partial index of the appointments that are not cancelled, again without the heap.
A scan of every row (``--all``) merge-joins calls and live appointments in id
order: the live-appointment index and a covering index of calls by id give both
sides without the heap or a hash table. SQLite has partial indexes but no
``INCLUDE``: there the ``created_at`` indexes stay plain and the index of calls
by id only mirrors the key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLS_WINDOW_COLUMNS = [
    "id",
    "appointment_made",
    "session_outcome",
    "direction",
    "appointment_link_status",
    "booking_failed",
]
APPOINTMENTS_WINDOW_COLUMNS = ["id", "call_id", "status"]
CALLS_BY_ID_COLUMNS = ["created_at", "appointment_made", "appointment_link_status"]
LIVE = sa.text("status <> 'cancelled'")


def upgrade() -> None:
    # The covering indexes replace the plain created_at ones (same key, same name).
    op.drop_index("ix_calls_created_at", table_name="calls")
    op.create_index(
        "ix_calls_created_at",
        "calls",
        ["created_at"],
        postgresql_include=CALLS_WINDOW_COLUMNS,
    )
    op.drop_index("ix_appointments_created_at", table_name="appointments")
    op.create_index(
        "ix_appointments_created_at",
        "appointments",
        ["created_at"],
        postgresql_include=APPOINTMENTS_WINDOW_COLUMNS,
    )
    op.create_index(
        "ix_appointments_live_call_id",
        "appointments",
        ["call_id"],
        postgresql_include=["id", "created_at"],
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )
    op.create_index("ix_calls_id_monitor", "calls", ["id"], postgresql_include=CALLS_BY_ID_COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_calls_id_monitor", table_name="calls")
    op.drop_index("ix_appointments_live_call_id", table_name="appointments")
    op.drop_index("ix_appointments_created_at", table_name="appointments")
    op.create_index("ix_appointments_created_at", "appointments", ["created_at"])
    op.drop_index("ix_calls_created_at", table_name="calls")
    op.create_index("ix_calls_created_at", "calls", ["created_at"])
