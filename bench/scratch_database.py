"""A database of a benchmark's own, on the test PostgreSQL server, migrated to head."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import make_url

from bookingguard.db import make_engine, migrate

__all__ = ["ADMIN_URL", "scratch_database"]

ADMIN_URL = os.environ.get(
    "BOOKINGGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def scratch_database(kind: str) -> Iterator[str]:
    """The URL of a new database ``bg_bench_<kind>_…`` on ``ADMIN_URL``'s server, migrated
    to head; dropped when the block ends, whatever is still connected."""
    admin = make_engine(ADMIN_URL, pool=False).execution_options(isolation_level="AUTOCOMMIT")
    name = f"bg_bench_{kind}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url, pool=False)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
