"""Running the Alembic history programmatically (the CLI's ``db`` commands and the tests)."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from bookingguard.errors import MigrationError

__all__ = [
    "alembic_config",
    "check_drift",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to ``engine`` (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(files("bookingguard.db") / "migrations"))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def _run_with_connection(engine: Engine, action: str, revision: str) -> None:
    config = alembic_config(engine)
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            if action == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
            connection.commit()
    except Exception as exc:
        current = current_revision(engine)
        raise MigrationError(
            f"{action} to {revision} failed, database left at revision {current or 'base'}: {exc}"
        ) from exc


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate up to ``revision``; each migration is its own transaction."""
    _run_with_connection(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate down to ``revision`` (``base`` removes everything)."""
    _run_with_connection(engine, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    """The single head of the history (an error if the history ever forks)."""
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def check_drift(engine: Engine) -> None:
    """Raise if the models and the migrated schema differ (``alembic check``)."""
    command.check(alembic_config(engine))
