"""Alembic environment: one history for PostgreSQL and SQLite, one transaction per migration."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Literal

from alembic import context
from sqlalchemy import Connection

from bookingguard.db.engine import make_engine
from bookingguard.db.models import Base

#: Monthly partitions of the alerts table are made by upkeep, not described by the models.
_PARTITION = re.compile(r"^data_consistency_alerts_(\d{4}_\d{2}|default)$")


def _include_name(
    name: str | None,
    type_: Literal[
        "schema",
        "table",
        "column",
        "index",
        "unique_constraint",
        "foreign_key_constraint",
        "check_constraint",
    ],
    _parent_names: MutableMapping[
        Literal["schema_name", "table_name", "schema_qualified_table_name"], str | None
    ],
) -> bool:
    return not (type_ == "table" and name is not None and _PARTITION.match(name))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        transaction_per_migration=True,
        include_name=_include_name,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no database URL given to the migration environment")
    engine = make_engine(url, pool=False)
    try:
        with engine.connect() as new_connection:
            _run(new_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
