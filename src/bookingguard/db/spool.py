"""The local durable spool: failed-booking records and breaker transitions the database
could not take.

When the booking path must write a failed booking down (the call flagged and filed
for review, or a Cal.com booking it could neither record nor cancel) and the database
is unreachable or refuses the write, the record goes to a SQLite file on this host
instead, committed in WAL mode with ``synchronous=FULL`` (the log is fsynced at each
commit) before the caller is told "we'll call you back". The replay
(``bookingguard.booking.spool_replay``) writes each record into the database once it
answers again, then deletes it here.

Breaker transitions decided by Redis or by a process's memory wait here too while the
database is down (``bookingguard.resilience.audit``): a process killed before the
database answered again loses none of them. They are kept by (circuit, version), as
the history keeps them, and their text is the audit's to read.

The spool is keyed by the Retell call id: the database's call id may never have been
known. Every record carries its own id, which the database write keeps beside what it
wrote, so a record replayed twice (a crash between the database's commit and the
delete here, two processes replaying at once) is written once.

Several processes (``serve --workers``) share one file: every operation opens its own
connection and writes in one ``BEGIN IMMEDIATE`` transaction, which SQLite's file locks
serialise (``busy_timeout`` waits for the holder). The file is created by the first
record: reading a spool that does not exist finds nothing, so a host whose database
never failed keeps no file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "BOOKING_FAILED",
    "CANCEL_UNRECORDED",
    "CHANGE_FAILED",
    "COMPENSATION_FAILED",
    "RESCHEDULE_UNRECORDED",
    "FailureRecord",
    "Spool",
    "SpooledTransition",
]

#: A booking that did not happen: the call flagged ``booking_failed`` with the reason,
#: and a review item.
BOOKING_FAILED = "booking_failed"
#: A Cal.com booking we could neither record nor cancel: a critical alert, a review
#: item and a notice.
COMPENSATION_FAILED = "compensation_failed"
#: A move or cancellation the caller asked for that did not happen (``reason`` is
#: ``reschedule_failed`` or ``cancel_failed``): the call needs a human, its booking
#: flags stay as they are, and a review item says what the caller wanted.
CHANGE_FAILED = "change_failed"

#: A cancellation Cal.com made (the caller was told so) that the database could not
#: write: written, it marks the appointment ``details["appointment_id"]`` cancelled, if it
#: is still live (the database unlinks its call). Nothing for a human to do.
CANCEL_UNRECORDED = "cancel_unrecorded"

#: A move Cal.com made (the caller was told so) that the database could not write:
#: written while the old appointment, ``details["appointment_id"]``, is still live, it
#: stores the booking Cal.com moved to (``details`` holds its fields) as the call's
#: appointment, unless a webhook stored it first, and marks the old one
#: ``rescheduled``. Nothing for a human to do.
RESCHEDULE_UNRECORDED = "reschedule_unrecorded"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS failure_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    retell_call_id TEXT NOT NULL,
    call_id INTEGER,
    reason TEXT NOT NULL,
    details TEXT NOT NULL,
    at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS circuit_transitions (
    circuit_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (circuit_key, version)
);
"""
_COLUMNS = "record_id, kind, retell_call_id, call_id, reason, details, at"


def _new_record_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class FailureRecord:
    """One failed booking to write down, with the id that makes writing it idempotent.

    ``kind`` is ``BOOKING_FAILED`` (``reason`` is the booking's result) or
    ``COMPENSATION_FAILED`` (``details`` holds ``calcom_booking_uid`` and ``error``).
    ``call_id`` is the database's call id when it was known.
    """

    kind: str
    retell_call_id: str
    call_id: int | None
    reason: str
    details: Mapping[str, Any]
    at: datetime
    record_id: str = field(default_factory=_new_record_id)


@dataclass(frozen=True)
class SpooledTransition:
    """A breaker transition waiting for the history: its circuit, version and encoding."""

    circuit_key: str
    version: int
    payload: str


class Spool:
    """Failure records and breaker transitions in the SQLite file at ``path``, shared by
    this host's processes."""

    def __init__(self, path: Path | str, *, busy_timeout_seconds: float = 30.0) -> None:
        self.path = Path(path)
        self._busy_timeout_seconds = busy_timeout_seconds

    def append(self, record: FailureRecord) -> None:
        """Keep ``record``, committed and fsynced when this returns (raises if it cannot)."""
        self._insert(
            f"INSERT OR IGNORE INTO failure_records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    record.record_id,
                    record.kind,
                    record.retell_call_id,
                    record.call_id,
                    record.reason,
                    json.dumps(dict(record.details), default=str),
                    record.at.isoformat(),
                )
            ],
        )

    def append_transitions(self, transitions: Sequence[SpooledTransition]) -> None:
        """Keep ``transitions`` (a repeat of one kept is ignored), committed and fsynced."""
        self._insert(
            "INSERT OR IGNORE INTO circuit_transitions (circuit_key, version, payload)"
            " VALUES (?, ?, ?)",
            [(t.circuit_key, t.version, t.payload) for t in transitions],
        )

    def pending_transitions(self, limit: int = 100) -> list[SpooledTransition]:
        """Up to ``limit`` kept transitions, by circuit and version."""
        if not self.path.exists():
            return []
        with self._connected() as connection:
            rows = connection.execute(
                "SELECT circuit_key, version, payload FROM circuit_transitions"
                " ORDER BY circuit_key, version LIMIT ?",
                (limit,),
            ).fetchall()
        return [SpooledTransition(*row) for row in rows]

    def remove_transitions(self, transitions: Sequence[SpooledTransition]) -> None:
        """Forget ``transitions`` (they are in the history now)."""
        if not self.path.exists() or not transitions:
            return
        with self._connected() as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "DELETE FROM circuit_transitions WHERE circuit_key = ? AND version = ?",
                [(t.circuit_key, t.version) for t in transitions],
            )
            connection.execute("COMMIT")

    def pending(self, limit: int = 100) -> list[FailureRecord]:
        """Up to ``limit`` records, those tried least often first, then the oldest."""
        if not self.path.exists():
            return []
        with self._connected() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM failure_records ORDER BY attempts, id LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            FailureRecord(
                record_id=row[0],
                kind=row[1],
                retell_call_id=row[2],
                call_id=row[3],
                reason=row[4],
                details=json.loads(row[5]),
                at=datetime.fromisoformat(row[6]),
            )
            for row in rows
        ]

    def remove(self, record_id: str) -> None:
        """Forget the record ``record_id`` (it is in the database now)."""
        self._write("DELETE FROM failure_records WHERE record_id = ?", (record_id,))

    def note_failure(self, record_id: str, error: str) -> None:
        """Count a failed replay of ``record_id``: it moves behind the records tried less."""
        self._write(
            "UPDATE failure_records SET attempts = attempts + 1, last_error = ?"
            " WHERE record_id = ?",
            (error, record_id),
        )

    def backlog(self) -> int:
        """How many records and transitions wait to be replayed."""
        if not self.path.exists():
            return 0
        with self._connected() as connection:
            count: int = connection.execute(
                "SELECT (SELECT count(*) FROM failure_records)"
                " + (SELECT count(*) FROM circuit_transitions)"
            ).fetchone()[0]
        return count

    def _insert(self, statement: str, rows: Sequence[tuple[object, ...]]) -> None:
        created = not self.path.exists()
        with self._connected() as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(statement, rows)
            connection.execute("COMMIT")
        if created:
            # The new file's name must survive a crash as well as its contents.
            _fsync_directory(self.path.parent)

    def _write(self, statement: str, parameters: tuple[object, ...]) -> None:
        if not self.path.exists():
            return
        with self._connected() as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(statement, parameters)
            connection.execute("COMMIT")

    @contextmanager
    def _connected(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (the statements say BEGIN), the schema in place."""
        connection = sqlite3.connect(
            self.path, timeout=self._busy_timeout_seconds, isolation_level=None
        )
        with closing(connection):
            connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_seconds * 1000)}")
            # "database is locked" here: another connection holds the new file (creating
            # it, setting WAL). The mode is the file's, set once; with synchronous=FULL
            # every commit below is fsynced in either mode, and BEGIN IMMEDIATE waits.
            with suppress(sqlite3.OperationalError):
                connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            connection.executescript(_SCHEMA)
            try:
                yield connection
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
