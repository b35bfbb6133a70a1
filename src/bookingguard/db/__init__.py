"""Persistence: models, engine, unit of work, migrations and the database-side guarantees."""

from bookingguard.db.engine import check_connection, make_engine
from bookingguard.db.models import Base
from bookingguard.db.uow import UnitOfWork, session_factory

__all__ = ["Base", "UnitOfWork", "check_connection", "make_engine", "session_factory"]
