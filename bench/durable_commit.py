"""The yardstick the benchmarks measure against: one durable commit on this server."""

from __future__ import annotations

import time

from sqlalchemy import Engine

__all__ = ["commit_latency"]


def commit_latency(engine: Engine, rounds: int) -> list[float]:
    """One-row INSERT + COMMIT on this server: the floor any durable write pays (WAL fsync)."""
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE bench_commit_probe (x integer)")
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO bench_commit_probe VALUES (1)")
        samples.append(time.perf_counter() - started)
    return samples
