"""Benchmark: Retell webhooks and ``GET /api/v1/consistency`` against ``bookingguard serve``.

Starts ``bookingguard serve --workers N`` on PostgreSQL + Redis (a database of its
own, migrated, dropped at the end) and drives it with wrk from a second process
over keep-alive connections on loopback. Every request is prepared beforehand and
sent once (bounded in count), under a time bound. Each simulated call sends
``call_started`` then ``call_analyzed``, signed with ``x-retell-signature``; the
calls go in blocks (the block's starts, then its analyses), so a call's two
events are never in flight together. Prints sustained requests/s and p50/p99
latency, checks that every call row is stored and analysed afterwards, then does
the same for ``GET /api/v1/consistency``. Goal: >= 1 000 webhook requests/s with
p99 < 50 ms, nothing lost. The database first holds ``--history`` earlier calls,
analysed, as a live system's does.

    .venv/bin/python bench/api_load.py [--calls 10000] [--reads 5000] [--workers 2]
                                       [--concurrency 16] [--seconds 60] [--history 100000]

Needs wrk (``apt-get install wrk``). Uses BOOKINGGUARD_TEST_POSTGRES_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres) and BOOKINGGUARD_TEST_REDIS_URL
(default redis://127.0.0.1:6379/12).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select, text

from bookingguard.api.signatures import retell_signature
from bookingguard.db import make_engine
from bookingguard.db.models import Call
from scratch_database import scratch_database

REDIS_URL = os.environ.get("BOOKINGGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
RETELL_KEY = "bench-retell-key"
API_SECRET = "bench-read-token-" + "x" * 16
GOAL_RPS = 1000.0
GOAL_P99_MS = 50.0
#: Calls per block: a block's call_started events, then its call_analyzed events.
BLOCK = 256

#: wrk sends the prepared requests (NUL-separated raw HTTP) once each, in order. When
#: the last answer is in it interrupts itself, so it stops and reports the real elapsed
#: time instead of sleeping out -d: SIGINT to wrk (the shell's parent) from a background
#: shell, as system() ignores SIGINT in its caller until the command returns. done()
#: prints one JSON line with the figures.
WRK_SCRIPT = r"""
local raw = assert(io.open(os.getenv("BENCH_REQUESTS"), "rb")):read("*a")
local prepared = {}
local position = 1
while position <= #raw do
  local stop = string.find(raw, "\0", position, true)
  prepared[#prepared + 1] = string.sub(raw, position, stop - 1)
  position = stop + 1
end
sent = 0
answered = 0

request = function()
  if sent < #prepared then
    sent = sent + 1
  end
  return prepared[sent]
end

response = function(status, headers, body)
  answered = answered + 1
  if answered == #prepared then
    os.execute("(sleep 0.02; kill -INT $PPID) &")
  end
end

local threads = {}
setup = function(thread)
  threads[#threads + 1] = thread
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, '
    .. '"sent": %d, "answered": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    threads[1]:get("sent"), threads[1]:get("answered"),
    latency:percentile(50), latency:percentile(99)))
end
"""


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


def webhook_requests(run: str, calls: int) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    prepared = []
    for first in range(0, calls, BLOCK):
        for event in ("call_started", "call_analyzed"):
            for index in range(first, min(calls, first + BLOCK)):
                body = webhook(event, f"bench_{run}_{index}", now_ms)
                headers = {
                    "Content-Type": "application/json",
                    "x-retell-signature": retell_signature(body, RETELL_KEY, timestamp_ms=now_ms),
                }
                prepared.append(request_bytes("POST", "/webhooks/retell", headers, body))
    return prepared


def run_wrk(
    port: int, prepared: list[bytes], *, concurrency: int, seconds: float, workdir: Path
) -> dict[str, Any]:
    """Send ``prepared`` once each with wrk; its figures as a dict."""
    requests_file = workdir / "requests.bin"
    requests_file.write_bytes(b"".join(item + b"\0" for item in prepared))
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds:.0f}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
        ],
        env={**os.environ, "BENCH_REQUESTS": str(requests_file)},
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def report(name: str, result: dict[str, Any]) -> tuple[float, float]:
    elapsed = result["duration_us"] / 1e6
    answered = min(result["answered"], result["sent"])
    rps = answered / elapsed
    p50, p99 = result["p50_us"] / 1000, result["p99_us"] / 1000
    print(
        f"{name}: {answered} requests answered in {elapsed:.1f} s = {rps:,.0f} req/s; "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; non-2xx {result['status_errors']}, "
        f"socket errors {result['socket_errors']}"
    )
    return rps, p99


def load_history(engine: Engine, calls: int) -> None:
    """``calls`` analysed calls from the past weeks, then ANALYZE: the tables a live system has.

    On an empty database the planner has no statistics while the run fills ``calls``
    (autovacuum analyses at most once a minute), and looks up calls by sequential scan.
    """
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO calls (retell_call_id, direction, from_number, to_number,"
                " call_status, started_at, ended_at, session_outcome, appointment_made,"
                " created_at, updated_at)"
                " SELECT 'history_' || g, 'inbound', '+4930123456', '+4930654321', 'ended',"
                " t, t + interval '2 minutes', 'information_only', false, t, t"
                " FROM generate_series(1, :calls) AS g,"
                " LATERAL (SELECT now() - interval '3 days' - g * interval '20 seconds') AS x(t)"
            ),
            {"calls": calls},
        )
    with engine.connect() as connection:
        outside = connection.execution_options(isolation_level="AUTOCOMMIT")
        outside.exec_driver_sql("VACUUM ANALYZE")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_serve(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
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
    command = [sys.executable, "-m", "bookingguard", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("serve did not become ready")
        time.sleep(0.2)


def measure(url: str, args: argparse.Namespace) -> None:
    """Serve ``url``'s database, then drive the webhooks and the reads at it with wrk."""
    engine = make_engine(url)
    server: subprocess.Popen[bytes] | None = None
    try:
        load_history(engine, args.history)
        port = free_port()
        server = start_serve(url, port, args.workers)
        print(
            f"serve --workers {args.workers}; wrk with {args.concurrency} connections;"
            f" {args.history:,} calls stored before the run"
        )
        with tempfile.TemporaryDirectory() as scratch:
            workdir = Path(scratch)
            warmup = webhook_requests("warmup", 500)
            run_wrk(port, warmup, concurrency=args.concurrency, seconds=30, workdir=workdir)

            run = uuid.uuid4().hex[:8]
            hooks = run_wrk(
                port,
                webhook_requests(run, args.calls),
                concurrency=args.concurrency,
                seconds=args.seconds,
                workdir=workdir,
            )
            rps, p99 = report("webhooks (call_started + call_analyzed)", hooks)
            with engine.connect() as connection:
                stored = int(
                    connection.scalar(
                        select(func.count())
                        .select_from(Call)
                        .where(
                            Call.retell_call_id.like(f"bench_{run}_%"),
                            Call.ended_at.is_not(None),
                        )
                    )
                    or 0
                )
            complete = hooks["sent"] == 2 * args.calls and not (
                hooks["status_errors"] or hooks["socket_errors"]
            )
            verdict = f"lost: {args.calls - stored}" if complete else "run incomplete"
            print(f"calls sent: {args.calls}; stored and analysed: {stored}; {verdict}")

            read = request_bytes(
                "GET", "/api/v1/consistency", {"Authorization": f"Bearer {API_SECRET}"}
            )
            reads = run_wrk(
                port,
                [read] * args.reads,
                concurrency=args.concurrency,
                seconds=args.seconds,
                workdir=workdir,
            )
            report("GET /api/v1/consistency", reads)
        print(
            f"webhook goal: {rps / GOAL_RPS:.2f} x the 1 000 req/s goal; "
            f"p99 {p99:.1f} ms vs the 50 ms goal ({GOAL_P99_MS / p99:.2f} x headroom)"
        )
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000, help="calls (2 webhooks each)")
    parser.add_argument("--reads", type=int, default=5_000, help="GET /api/v1/consistency")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", type=int, default=16, help="connections")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per phase")
    parser.add_argument(
        "--history", type=int, default=100_000, help="calls already stored before the run"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/api_load.py needs wrk: apt-get install wrk")

    with scratch_database("api") as url:
        measure(url, args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
