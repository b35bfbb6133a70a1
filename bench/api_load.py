"""Benchmark: Retell webhooks and ``GET /api/v1/consistency`` against ``bookingguard serve``.

Starts ``bookingguard serve`` on PostgreSQL + Redis (a database of its own, migrated,
dropped at the end) and drives it from a second process: an asyncio load generator
over keep-alive HTTP/1.1 connections on loopback, bounded in count and time. Each
simulated call sends ``call_started`` then ``call_analyzed``, signed with
``x-retell-signature``. Prints sustained requests/s, p50/p99 latency, checks every
call row is stored afterwards, then does the same for ``GET /api/v1/consistency``.
Goal: >= 1 000 webhook requests/s with p99 < 50 ms, nothing lost.

    .venv/bin/python bench/api_load.py [--calls 10000] [--seconds 30] [--concurrency 32]

Uses BOOKINGGUARD_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
and BOOKINGGUARD_TEST_REDIS_URL (default redis://127.0.0.1:6379/12).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bookingguard.api.signatures import retell_signature
from bookingguard.db import make_engine, migrate
from bookingguard.db.models import Call

ADMIN_URL = os.environ.get(
    "BOOKINGGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BOOKINGGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
RETELL_KEY = "bench-retell-key"
API_SECRET = "bench-read-token-" + "x" * 16
GOAL_RPS = 1000.0
GOAL_P99_MS = 50.0


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def webhook(event: str, call_id: str, now_ms: int) -> bytes:
    call: dict[str, Any] = {
        "call_id": call_id,
        "direction": "inbound",
        "from_number": "+4930123456",
        "to_number": "+4930654321",
        "call_status": "registered" if event == "call_started" else "ended",
        "start_timestamp": now_ms - 120_000,
    }
    if event == "call_analyzed":
        call["end_timestamp"] = now_ms
        call["call_analysis"] = {"custom_analysis_data": {"session_outcome": "no_booking"}}
    return json.dumps({"event": event, "call": call}).encode()


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def generate(port: int, plan: dict[str, Any]) -> dict[str, Any]:
    """Send the planned requests over ``concurrency`` connections; latencies and statuses."""
    deadline = time.monotonic() + plan["seconds"]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
    for sequence in plan["sequences"]:
        queue.put_nowait([bytes.fromhex(item) for item in sequence])

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not queue.empty() and time.monotonic() < deadline:
                for raw in queue.get_nowait():
                    started = time.perf_counter()
                    writer.write(raw)
                    status = await read_response(reader)
                    latencies.append(time.perf_counter() - started)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(plan["concurrency"])))
    elapsed = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed}


def run_generator(port: int, plan: dict[str, Any]) -> dict[str, Any]:
    """Run ``generate`` in a second Python process (the plan goes in on stdin)."""
    done = subprocess.run(
        [sys.executable, __file__, "--generator", str(port)],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        timeout=plan["seconds"] + 120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def report(name: str, result: dict[str, Any]) -> tuple[float, float]:
    latencies = result["latencies"]
    rps = len(latencies) / result["elapsed"]
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    print(
        f"{name}: {len(latencies)} requests in {result['elapsed']:.1f} s = {rps:,.0f} req/s; "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; statuses {result['statuses']}"
    )
    return rps, p99


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000, help="calls (2 webhooks each)")
    parser.add_argument("--reads", type=int, default=10_000, help="GET /api/v1/consistency")
    parser.add_argument("--seconds", type=float, default=30.0, help="time bound per phase")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    admin = make_engine(ADMIN_URL, pool=False).execution_options(isolation_level="AUTOCOMMIT")
    name = f"bg_bench_api_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    server: subprocess.Popen[bytes] | None = None
    try:
        migrate.upgrade(engine)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKINGGUARD_")}
        env.update(
            {
                "BOOKINGGUARD_DATABASE_URL": url,
                "BOOKINGGUARD_REDIS_URL": REDIS_URL,
                "BOOKINGGUARD_RETELL__API_KEY": RETELL_KEY,
                "BOOKINGGUARD_API__TOKENS": json.dumps([f"bench:read:{API_SECRET}"]),
                "BOOKINGGUARD_API__RATE_LIMIT": "10000000/minute",
                "BOOKINGGUARD_MONITORING__INTERVAL_SECONDS": "3600",
            }
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "bookingguard", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("serve did not become ready")
            time.sleep(0.2)

        run = uuid.uuid4().hex[:8]
        now_ms = int(time.time() * 1000)
        sequences = []
        for index in range(args.calls):
            call_id = f"bench_{run}_{index}"
            sequence = []
            for event in ("call_started", "call_analyzed"):
                body = webhook(event, call_id, now_ms)
                signature = retell_signature(body, RETELL_KEY, timestamp_ms=now_ms)
                headers = {"Content-Type": "application/json", "x-retell-signature": signature}
                sequence.append(request_bytes("POST", "/webhooks/retell", headers, body).hex())
            sequences.append(sequence)
        plan = {"sequences": sequences, "seconds": args.seconds, "concurrency": args.concurrency}
        hooks = run_generator(port, plan)
        rps, p99 = report("webhooks (call_started + call_analyzed)", hooks)
        sent_calls = hooks["statuses"].get("204", 0) // 2
        with engine.connect() as connection:
            stored = connection.scalar(
                select(func.count())
                .select_from(Call)
                .where(Call.retell_call_id.like(f"bench_{run}_%"), Call.ended_at.is_not(None))
            )
        print(
            f"calls answered 204 twice: {sent_calls}; call rows stored and analyzed: {stored}; "
            f"lost: {sent_calls - int(stored or 0)}"
        )

        read = request_bytes(
            "GET", "/api/v1/consistency", {"Authorization": f"Bearer {API_SECRET}"}
        ).hex()
        reads = {
            "sequences": [[read]] * args.reads,
            "seconds": args.seconds,
            "concurrency": args.concurrency,
        }
        report("GET /api/v1/consistency", run_generator(port, reads))
        print(
            f"webhook goal: {rps / GOAL_RPS:.2f} x the 1 000 req/s goal; "
            f"p99 {p99:.1f} ms vs the 50 ms goal ({GOAL_P99_MS / p99:.2f} x headroom)"
        )
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--generator":
        outcome = asyncio.run(generate(int(sys.argv[2]), json.loads(sys.stdin.read())))
        sys.stdout.write(json.dumps(outcome))
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        main()
