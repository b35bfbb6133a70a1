"""Shared fixtures: a migrated database per dialect, the PostgreSQL and Redis servers.

Schema always comes from the migrations. Each run creates its own PostgreSQL
databases (a migrated template, then one clone per test) and drops them at the
end. With ``CI=true`` an unreachable PostgreSQL or Redis fails the run.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bookingguard.db import make_engine, migrate, session_factory

pytest_plugins = ["tests.support.fixtures"]

POSTGRES_URL = os.environ.get(
    "BOOKINGGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BOOKINGGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"
RUN_ID = uuid.uuid4().hex[:8]
DIALECTS = ["sqlite", "postgresql"]


def service_unavailable(what: str, reason: object) -> None:
    """Fail under CI, skip on a developer machine: a missing server is never a silent pass."""
    message = f"{what} unreachable: {reason}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass
class TestDatabase:
    """A freshly migrated database of one dialect, private to one test."""

    __test__ = False

    dialect: str
    url: str
    engine: Engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)


class PostgresServer:
    """Creates a migrated template database once, then cheap clones of it."""

    def __init__(self, admin_url: str) -> None:
        self.admin = make_engine(admin_url, pool=False).execution_options(
            isolation_level="AUTOCOMMIT"
        )
        self.base_url = make_url(admin_url)
        self.prefix = f"bg_test_{RUN_ID}_{os.getpid()}"
        self.template = f"{self.prefix}_tmpl"
        self.count = 0

    def url_for(self, name: str) -> str:
        return self.base_url.set(database=name).render_as_string(hide_password=False)

    def create(self, name: str, template: str | None = None) -> str:
        clause = f" TEMPLATE {template}" if template else ""
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}{clause}")
        return self.url_for(name)

    def drop(self, name: str) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def clone(self) -> str:
        self.count += 1
        return self.create(f"{self.prefix}_{self.count}", template=self.template)

    def drop_all(self) -> None:
        with self.admin.connect() as connection:
            names = connection.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                {"p": f"{self.prefix}%"},
            ).scalars()
            for name in list(names):
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(POSTGRES_URL)
    try:
        with server.admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        service_unavailable("PostgreSQL", exc)
    url = server.create(server.template)
    engine = make_engine(url, pool=False)
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield server
    finally:
        server.drop_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}", pool=False)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _make_database(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[TestDatabase]:
    if dialect == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "bookingguard.db"
        shutil.copyfile(template, path)
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        yield TestDatabase("sqlite", url, engine)
        engine.dispose()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.clone()
    engine = make_engine(url)
    yield TestDatabase("postgresql", url, engine)
    engine.dispose()
    server.drop(make_url(url).database or "")


@pytest.fixture(params=DIALECTS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """A migrated database, once per dialect: every DB behaviour is tested on both."""
    yield from _make_database(request.param, request, tmp_path)


@pytest.fixture
def sqlite_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """A migrated SQLite database, for what only the embedded default has (pragmas, BEGIN modes)."""
    yield from _make_database("sqlite", request, tmp_path)


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """A migrated PostgreSQL database, for what only PostgreSQL has (partitions, pg_trigger)."""
    yield from _make_database("postgresql", request, tmp_path)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis database. Tests namespace their keys (see ``redis_prefix``), never FLUSHDB."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable("Redis", exc)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix private to one test, so parallel runs on one Redis never collide."""
    return f"bgtest:{RUN_ID}:{uuid.uuid4().hex[:8]}:"
