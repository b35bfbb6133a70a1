"""Benchmark: what the appointment-link guarantee costs on a 100 000-row bulk insert (PostgreSQL).

For COPY and for one multi-row INSERT, in one run: the insert with the guarantees
enabled (the statement-level trigger links every call), the same insert with them
disabled, and a plain UPDATE of the same calls with no trigger. Prints rows/s and
the ratio guarded / (unguarded insert + plain update); the goal is <= 1.15.

    .venv/bin/python bench/bulk_link.py [--rows 100000] [--repeat 3]

Uses BOOKINGGUARD_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
to create, and finally drop, a database of its own.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text

from bookingguard.db import ddl, make_engine
from scratch_database import scratch_database

START = datetime(2026, 12, 1, 9, tzinfo=UTC)


def reset(engine: Engine, rows: int) -> None:
    """Fresh calls 1..rows, no appointments, statistics up to date."""
    with engine.begin() as connection:
        connection.exec_driver_sql("TRUNCATE appointments, calls RESTART IDENTITY CASCADE")
        connection.execute(
            text(
                "INSERT INTO calls (retell_call_id, direction, call_status, created_at) "
                "SELECT 'bench-' || g, 'inbound', 'ended', now() FROM generate_series(1, :n) g"
            ),
            {"n": rows},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE calls")
        connection.exec_driver_sql("VACUUM ANALYZE appointments")


def set_guarantees(engine: Engine, *, enabled: bool) -> None:
    with engine.begin() as connection:
        ddl.set_triggers_enabled(connection, enabled=enabled)


def copy_appointments(connection: Connection, rows: int) -> None:
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy("COPY appointments (call_id, status, starts_at) FROM STDIN") as copy:
        for call_id in range(1, rows + 1):
            copy.write_row((call_id, "booked", START))


def multi_row_insert(rows: int) -> Callable[[Connection, int], None]:
    values = ",".join(f"({n},'booked','{START.isoformat()}')" for n in range(1, rows + 1))
    statement = f"INSERT INTO appointments (call_id, status, starts_at) VALUES {values}"

    def insert(connection: Connection, _rows: int) -> None:
        connection.exec_driver_sql(statement)

    return insert


def plain_update(connection: Connection, rows: int) -> None:
    connection.execute(
        text(
            "UPDATE calls SET appointment_made = true, session_outcome = 'appointment_booked', "
            "appointment_link_status = 'linked', appointment_linked_at = now(), "
            "updated_at = now() WHERE id BETWEEN 1 AND :n"
        ),
        {"n": rows},
    )


def timed(engine: Engine, action: Callable[[Connection, int], None], rows: int) -> float:
    started = time.perf_counter()
    with engine.begin() as connection:
        action(connection, rows)
    return time.perf_counter() - started


def linked_calls(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM calls WHERE appointment_link_status = 'linked'")
            ).scalar_one()
        )


def measure(
    engine: Engine, name: str, insert: Callable[[Connection, int], None], rows: int, repeat: int
) -> dict[str, float]:
    guarded: list[float] = []
    unguarded: list[float] = []
    updates: list[float] = []
    for _ in range(repeat):
        reset(engine, rows)
        set_guarantees(engine, enabled=True)
        guarded.append(timed(engine, insert, rows))
        if linked_calls(engine) != rows:
            raise SystemExit(f"{name}: guarded insert did not link every call")

        reset(engine, rows)
        set_guarantees(engine, enabled=False)
        unguarded.append(timed(engine, insert, rows))
        updates.append(timed(engine, plain_update, rows))
        set_guarantees(engine, enabled=True)
    result = {
        "guarded": statistics.median(guarded),
        "unguarded": statistics.median(unguarded),
        "update": statistics.median(updates),
    }
    result["ratio"] = result["guarded"] / (result["unguarded"] + result["update"])
    result["ratio_to_unguarded"] = result["guarded"] / result["unguarded"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with scratch_database("bulk") as url:
        engine = make_engine(url)
        try:
            print(
                f"bulk link benchmark: {args.rows:,} appointments for {args.rows:,} calls, "
                f"median of {args.repeat}"
            )
            header = (
                f"{'path':<18}{'guarded s':>11}{'rows/s':>12}{'unguarded s':>13}"
                f"{'rows/s':>12}{'update s':>10}{'ratio':>8}{'vs bare':>9}"
            )
            print(header)
            for label, insert in (
                ("COPY", copy_appointments),
                ("multi-row INSERT", multi_row_insert(args.rows)),
            ):
                r = measure(engine, label, insert, args.rows, args.repeat)
                print(
                    f"{label:<18}{r['guarded']:>11.3f}{args.rows / r['guarded']:>12,.0f}"
                    f"{r['unguarded']:>13.3f}{args.rows / r['unguarded']:>12,.0f}"
                    f"{r['update']:>10.3f}{r['ratio']:>8.2f}{r['ratio_to_unguarded']:>9.2f}"
                )
            print("ratio = guarded / (unguarded insert + plain update); goal <= 1.15")
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
